"""The status record: one schema (CONTRACT.md), written by the server and workers.

Durable in the state (`upload_service.core.state`: a JSON file per upload on
one machine, a PostgreSQL row for several), cached in Redis so a poll is one
round trip. The state is the truth: a Redis restart or FLUSHALL loses nothing,
the next read refills the cache from it.

Every write refreshes the cache and announces the upload id on CHANNEL, in one
round trip, so that a server that keeps bodies nearer still (the fast path's
near cache) drops its copy. Workers write with StatusStore (synchronous
redis-py); the server writes the state in a thread and the cache from the event
loop, through a StatusCache (redis-py's asyncio client or the fast path's wire).
A worker's StatusStore rides out a Redis outage (`core.redis_deferred`): its
writes reach the state, and the cache is repaired once Redis answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

from redis import Redis

from upload_service.core.ids import checked_id, is_safe_id
from upload_service.core.once_per_interval import OncePerInterval
from upload_service.core.redis_deferred import OUTAGE_ERRORS, DeferredChores
from upload_service.core.state.base import ENDED as ENDED
from upload_service.core.state.base import Record as Record
from upload_service.core.state.base import StatusRecords
from upload_service.core.state.base import UploadEnded as UploadEnded
from upload_service.core.state.base import encode as encode
from upload_service.core.state.base import iso as iso
from upload_service.core.state.files import FileStatusRecords
from upload_service.core.store.base import UploadInfo
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

# Where status records are: the state's, or a directory of files (one machine).
RecordsSource = StatusRecords | Path


def status_records(source: RecordsSource) -> StatusRecords:
    return FileStatusRecords(source) if isinstance(source, Path) else source


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


UPLOADING = b'"state":"uploading"'  # as `encode` writes it


def says_uploading(body: bytes) -> bool:
    """An `uploading` body: one that the file may have overtaken (see StatusReader)."""
    return UPLOADING in body


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class Overtaken(Exception):
    """A late write found the record moved on past what it brings."""


class StatusStore:
    """Synchronous writer and reader, for workers and (through threads) the server."""

    def __init__(
        self, records: RecordsSource, redis: Redis | None, deferred: DeferredChores | None = None
    ) -> None:
        """`deferred`: a Redis outage delays the cache's refresh instead of failing the
        write (a worker's; the state, written first, is the truth either way)."""
        self.records = status_records(records)
        self.redis = redis
        self.deferred = deferred

    def get(self, upload_id: str) -> Record | None:
        """The record, or None; UnsafeId for what is no upload id, whatever the state."""
        checked_id(upload_id)
        if self.redis is not None:
            if self.deferred is not None and self.deferred.waiting:
                return self._read_state(upload_id)  # the cache may be stale until repaired
            try:
                cached = self.redis.get(CACHE_PREFIX + upload_id)
            except OUTAGE_ERRORS:
                if self.deferred is None:
                    raise
                return self._read_state(upload_id)
            if cached:
                return json.loads(cached)
        return self._load(upload_id)

    def _read_state(self, upload_id: str) -> Record | None:
        body = self.records.read(upload_id)
        return None if body is None else cast(Record, json.loads(body))

    def _load(self, upload_id: str) -> Record | None:
        body = self.records.read(upload_id)
        if body is None:
            return None
        if self.redis is not None:
            # NX: a write that landed since the state was read keeps its newer body.
            try:
                self.redis.set(CACHE_PREFIX + upload_id, body, ex=CACHE_TTL, nx=True)
            except OUTAGE_ERRORS:
                if self.deferred is None:
                    raise
        return cast(Record, json.loads(body))

    def _refresh_cache(self, upload_id: str, body: bytes) -> None:
        if self.redis is None:
            return
        if self.deferred is None:
            self._set_cache(upload_id, body)
            return
        # Once Redis is back, the entry is dropped rather than set: a deletion
        # can never put back an older body than a later write's, and the next
        # read refills it from the state.
        self.deferred.run(
            CACHE_PREFIX + upload_id,
            functools.partial(self._set_cache, upload_id, body),
            later=functools.partial(self.forget_cache, upload_id),
        )

    def _set_cache(self, upload_id: str, body: bytes) -> None:
        assert self.redis is not None
        # One round trip: the new body, and word to every server's near cache.
        # Not a Lua script, though it is faster: Redis then
        # answered the writer before it told the servers, and a poll sent right
        # after a write could still read the old body from a near cache.
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(CACHE_PREFIX + upload_id, body, ex=CACHE_TTL)
        pipe.publish(CHANNEL, upload_id)
        pipe.execute()

    def put(self, record: Record) -> Record:
        self._refresh_cache(record["id"], self.write_file(record))
        return record

    def update(self, upload_id: str, **changes: Any) -> Record:
        record, body = self.update_file(upload_id, **changes)
        self._refresh_cache(upload_id, body)
        return record

    def advance(self, upload_id: str, **changes: Any) -> Record:
        """A worker's write: refused (UploadEnded) once the upload was terminated
        or expired, so a job's progress never brings a deleted upload back. The
        check and the write are one change of the state: a DELETE cannot land
        between them."""

        def unless_ended(record: Record) -> None:
            if record["state"] in ENDED:
                raise UploadEnded(upload_id, record["state"])
            record.update(changes)

        record, body = self.records.change(upload_id, unless_ended)
        self._refresh_cache(upload_id, body)
        return record

    # -- the state alone: the server refreshes the cache itself (StatusCache.publish) --
    # (named for the files they once were; they write whichever state is configured)
    def write_file(self, record: Record) -> bytes:
        """Stamp and durably replace the record; returns its body."""
        return self.records.write(record)

    def update_file(self, upload_id: str, **changes: Any) -> tuple[Record, bytes]:
        """Apply `changes` to the stored record as one change; KeyError without one."""
        return self.records.change(upload_id, lambda record: record.update(changes))

    def update_uploading_file(self, upload_id: str, **changes: Any) -> tuple[Record, bytes]:
        """`update_file` for a late progress write: only while the record says
        `uploading` with an offset not past the new one; Overtaken otherwise (what
        was recorded since, a completion or a newer offset, stays)."""

        def while_behind(record: Record) -> None:
            if record["state"] != "uploading" or record["offset"] > changes["offset"]:
                raise Overtaken(upload_id)
            record.update(changes)

        return self.records.change(upload_id, while_behind)

    def remove(self, upload_id: str) -> None:
        """The record gone, state and cache: the id is unknown from then on."""
        self.records.delete(upload_id)
        self.forget_cache(upload_id)

    def forget_cache(self, upload_id: str) -> None:
        if self.redis is not None:
            self.redis.delete(CACHE_PREFIX + upload_id)
            self.redis.publish(CHANNEL, upload_id)


class StatusCache(Protocol):
    """The Redis cache of status bodies, from the event loop.

    `publish` is a write's refresh: the same two commands as StatusStore.put
    (SET, then PUBLISH on CHANNEL, sent together and answered in that order).
    `fill` is a read's refill from the state: SET NX and no announcement, so a
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
    async def checked(self, upload_id: str, cached: bytes) -> bytes: ...


# When a cached `uploading` body is next compared with the state: at most once a
# second per upload and process. An upload in flight is polled often, and a state
# read on every poll cost the status API most of its speed; a cache left stale by a
# Redis outage is then served for a second at most.
UPLOADING_CHECK_EVERY = 1.0


class StatusReader:
    """The API's read path: one round trip to the cache, the state on a miss.

    A cached `uploading` is checked against the state (now and then: UPLOADING_CHECK_EVERY):
    the last byte's status is written to the state first, and if Redis was away then,
    the cache may still say `uploading` when it is back (core.handoff). The state's
    body then replaces the cache's.
    """

    def __init__(
        self,
        records: RecordsSource,
        cache: StatusCache,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = status_records(records)
        self.cache = cache
        self.uploading_checks = OncePerInterval(UPLOADING_CHECK_EVERY, clock)

    async def get_raw(self, upload_id: str) -> bytes | None:
        body = await self.cache.get(upload_id)
        if not body:
            return await self._from_state(upload_id)
        return await self.checked(upload_id, body)

    async def get_many_raw(self, ids: list[str]) -> list[bytes]:
        if not ids:
            return []
        bodies = await self.cache.get_many(ids)
        found: list[bytes] = []
        for upload_id, cached in zip(ids, bodies, strict=True):
            body = await self.checked(upload_id, cached) if cached else None
            body = body or await self._from_state(upload_id)
            if body:
                found.append(body)
        return found

    async def checked(self, upload_id: str, cached: bytes) -> bytes:
        """`cached`, or the state's body when that has moved past `uploading`."""
        if not says_uploading(cached) or not self.uploading_checks.due(upload_id):
            return cached
        stored = await self._read(upload_id)
        if stored is None or says_uploading(stored):
            return cached  # offsets move on without a cache refresh each time
        await self.cache.publish(upload_id, stored)
        return stored

    async def _read(self, upload_id: str) -> bytes | None:
        if not is_safe_id(upload_id):
            return None
        stored = await run_read(self.records.read, upload_id)
        if stored is None:
            return None
        try:
            return encode(json.loads(stored))
        except ValueError:  # a torn file: no such record
            return None

    async def _from_state(self, upload_id: str) -> bytes | None:
        body = await self._read(upload_id)
        if body is not None:
            await self.cache.fill(upload_id, body)
        return body
