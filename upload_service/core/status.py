"""The status record: one schema (CONTRACT.md), written by the server and workers.

Durable as a JSON file per upload under `<data>/status/`, cached in Redis so a
poll is one round trip. The file is the truth: a Redis restart loses nothing,
the next read refills the cache from disk.

Every write refreshes the cache and announces the upload id on CHANNEL, in one
round trip, so that a server that keeps bodies nearer still (the fast path's
near cache) drops its copy. Workers write with StatusStore (synchronous
redis-py); the server writes the file in a thread and the cache from the event
loop, through a StatusCache (redis-py's asyncio client or the fast path's wire).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from redis import Redis

from upload_service.core.ids import safe_child
from upload_service.core.store.base import UploadInfo
from upload_service.core.store.local import atomic_write_bytes
from upload_service.core.threads import run_read

STATES = (
    "uploading", "uploaded", "processing", "playable", "ready", "failed", "terminated", "expired",
)  # fmt: skip
# `playable`: the smallest rendition plays the whole media; the rest is still coming.
STAGES = ("upload", "probe", "transcode", "transcribe", "publish")
CACHE_PREFIX = "upload-status:"
CACHE_TTL = 7 * 24 * 3600
# Every status write publishes the upload's id here (see the module's docstring).
CHANNEL = "upload-status:changed"

Record = dict[str, Any]
# Ended by the user (DELETE) or by expiry: no worker may write over it again.
ENDED = ("terminated", "expired")


class UploadEnded(Exception):
    """The upload was terminated or expired while a job was working on it."""

    def __init__(self, upload_id: str, state: str) -> None:
        super().__init__(f"upload {upload_id} is {state}")
        self.upload_id = upload_id
        self.state = state


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_record(info: UploadInfo) -> Record:
    now = iso(info.created_at)
    return {
        "id": info.id,
        "owner": info.owner,
        "state": "uploaded" if info.finished else "uploading",
        "offset": info.offset,
        "length": info.length,
        "metadata": info.metadata,
        "meta": info.meta,
        "progress": None,
        "media": None,
        "outputs": {},
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def encode(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class StatusStore:
    """Synchronous writer and reader, for workers and (through threads) the server."""

    def __init__(self, directory: Path, redis: Redis | None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis = redis

    def _path(self, upload_id: str) -> Path:
        return safe_child(self.directory, upload_id, ".json")

    def get(self, upload_id: str) -> Record | None:
        if self.redis is not None:
            cached = self.redis.get(CACHE_PREFIX + upload_id)
            if cached:
                return json.loads(cached)
        return self._load(upload_id)

    def _load(self, upload_id: str) -> Record | None:
        body = self._read_file(upload_id)
        if body is None:
            return None
        if self.redis is not None:
            # NX: a write that landed since the file was read keeps its newer body.
            self.redis.set(CACHE_PREFIX + upload_id, body, ex=CACHE_TTL, nx=True)
        return cast(Record, json.loads(body))

    def _read_file(self, upload_id: str) -> bytes | None:
        try:
            return self._path(upload_id).read_bytes()
        except OSError:  # FileNotFoundError included
            return None

    def put(self, record: Record) -> Record:
        body = self.write_file(record)
        if self.redis is not None:
            # One round trip: the new body, and word to every server's near cache.
            # Not a Lua script, though it is faster: Redis then
            # answered the writer before it told the servers, and a poll sent right
            # after a write could still read the old body from a near cache.
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(CACHE_PREFIX + record["id"], body, ex=CACHE_TTL)
            pipe.publish(CHANNEL, record["id"])
            pipe.execute()
        return record

    def update(self, upload_id: str, **changes: Any) -> Record:
        return self.put(self._changed(upload_id, changes))

    def advance(self, upload_id: str, **changes: Any) -> Record:
        """A worker's write: refused (UploadEnded) once the upload was terminated
        or expired, so a job's progress never brings a deleted upload back."""
        record = self._changed(upload_id, {})
        if record["state"] in ENDED:
            raise UploadEnded(upload_id, record["state"])
        record.update(changes)
        return self.put(record)

    # -- the file alone: the server refreshes the cache itself (StatusCache.publish) ----
    def write_file(self, record: Record) -> bytes:
        """Stamp and durably replace the record's file; returns its body."""
        record["updated_at"] = iso()
        body = encode(record)  # once, for the file and the cache alike
        atomic_write_bytes(self._path(record["id"]), body)
        return body

    def update_file(self, upload_id: str, **changes: Any) -> tuple[Record, bytes]:
        record = self._changed(upload_id, changes)
        return record, self.write_file(record)

    def _changed(self, upload_id: str, changes: dict[str, Any]) -> Record:
        # The file, not the cache: it is the truth (and every write refreshes the cache).
        body = self._read_file(upload_id)
        if body is None:
            raise KeyError(upload_id)
        record = cast(Record, json.loads(body))
        record.update(changes)
        return record

    def forget_cache(self, upload_id: str) -> None:
        if self.redis is not None:
            self.redis.delete(CACHE_PREFIX + upload_id)
            self.redis.publish(CHANNEL, upload_id)


class StatusCache(Protocol):
    """The Redis cache of status bodies, from the event loop.

    `publish` is a write's refresh: the same two commands as StatusStore.put
    (SET, then PUBLISH on CHANNEL, sent together and answered in that order).
    `fill` is a read's refill from the file: SET NX and no announcement, so a
    write that landed meanwhile is never overwritten by the older body.
    """

    async def get(self, upload_id: str) -> bytes | None: ...
    async def get_many(self, upload_ids: list[str]) -> list[bytes | None]: ...
    async def fill(self, upload_id: str, body: bytes) -> None: ...
    async def publish(self, upload_id: str, body: bytes) -> None: ...


class StatusReads(Protocol):
    """What the status API reads: raw bodies, as cached."""

    async def get_raw(self, upload_id: str) -> bytes | None: ...
    async def get_many_raw(self, ids: list[str]) -> list[bytes]: ...


class StatusReader:
    """The API's read path: one round trip to the cache, the file on a miss."""

    def __init__(self, directory: Path, cache: StatusCache) -> None:
        self.directory = Path(directory)
        self.cache = cache

    async def get_raw(self, upload_id: str) -> bytes | None:
        body = await self.cache.get(upload_id)
        return body if body else await self._from_disk(upload_id)

    async def get_many_raw(self, ids: list[str]) -> list[bytes]:
        if not ids:
            return []
        bodies = await self.cache.get_many(ids)
        found: list[bytes] = []
        for upload_id, cached in zip(ids, bodies, strict=True):
            body = cached or await self._from_disk(upload_id)
            if body:
                found.append(body)
        return found

    async def _from_disk(self, upload_id: str) -> bytes | None:
        try:
            path = safe_child(self.directory, upload_id, ".json")
            record = json.loads(await run_read(path.read_bytes))
        except (OSError, ValueError):  # UnsafeId is a ValueError: no such record
            return None
        body = encode(record)
        await self.cache.fill(upload_id, body)
        return body
