"""The state on one machine's disk: the default, and all `upload-service dev` needs.

Status records are one JSON file per upload, `<data>/status/<id>.json`, replaced
atomically; the webhook log is `<data>/webhooks/<id>.jsonl` (webhook_log).

A change holds an exclusive `flock` while it reads, mutates and replaces the
file, so the server's processes and the worker's never lose each other's
writes. The locks are a fixed set of stripe files (`.locks/NN`) picked by the
id's hash: a handful of files whatever the number of uploads, and two uploads
that share a stripe only wait for each other for one file write.

Listing and counting read every record: fine for the uploads one machine
holds; several machines (and large listings) want PostgreSQL.
"""

from __future__ import annotations

import fcntl
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import cast

from upload_service.core.ids import UnsafeId, safe_child
from upload_service.core.state.base import (
    UNFINISHED,
    ListQuery,
    Mutation,
    Page,
    Record,
    page_of,
    parse_iso,
    sort_key,
    stamp,
)
from upload_service.core.store.local import atomic_write_bytes
from upload_service.core.webhook_log import WebhookLog

LOCK_STRIPES = 64


class FileStatusRecords:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._locks = self.directory / ".locks"
        self._locks.mkdir(exist_ok=True)

    def _path(self, upload_id: str) -> Path:
        return safe_child(self.directory, upload_id, ".json")

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        stripe = zlib.crc32(upload_id.encode()) % LOCK_STRIPES
        # Its own descriptor each time: flock excludes other descriptors, in this
        # process's other threads as in other processes.
        fd = os.open(self._locks / f"{stripe:02d}", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def read(self, upload_id: str) -> bytes | None:
        try:
            return self._path(upload_id).read_bytes()
        except (OSError, UnsafeId):  # FileNotFoundError included; a bad id names nothing
            return None

    def write(self, record: Record) -> bytes:
        path = self._path(record["id"])
        with self._locked(record["id"]):
            body = stamp(record)
            atomic_write_bytes(path, body)
        return body

    def change(self, upload_id: str, mutate: Mutation) -> tuple[Record, bytes]:
        path = self._path(upload_id)
        with self._locked(upload_id):
            body = self.read(upload_id)
            if body is None:
                raise KeyError(upload_id)
            record = cast(Record, json.loads(body))
            mutate(record)
            body = stamp(record)
            atomic_write_bytes(path, body)
        return record, body

    def delete(self, upload_id: str) -> bool:
        with self._locked(upload_id):
            try:
                self._path(upload_id).unlink()
            except (FileNotFoundError, UnsafeId):
                return False
        return True

    def _all(self) -> Iterator[Record]:
        for path in self.directory.glob("*.json"):
            try:
                yield cast(Record, json.loads(path.read_bytes()))
            except (OSError, ValueError):
                continue  # removed meanwhile

    def page(self, query: ListQuery) -> Page:
        after = query.position()
        states = set(query.states)
        found = []
        for record in self._all():
            if query.owner is not None and record.get("owner") != query.owner:
                continue
            if states and record.get("state") not in states:
                continue
            key = sort_key(record)
            if query.created_after is not None and key[0] <= query.created_after:
                continue
            if after is not None and key <= after:
                continue
            found.append(record)
        found.sort(key=sort_key)
        return page_of(found[: query.limit + 1], query.limit)

    def count(self, owner: str, states: Iterable[str] = UNFINISHED) -> int:
        wanted = set(states)
        return sum(1 for r in self._all() if r.get("owner") == owner and r.get("state") in wanted)

    def list_expired(self, states: Iterable[str], updated_before: float, limit: int) -> list[str]:
        wanted = set(states)
        found: list[tuple[datetime, str]] = []
        for record in self._all():
            if record.get("state") in wanted:
                updated = parse_iso(record["updated_at"])
                if updated.timestamp() < updated_before:
                    found.append((updated, record["id"]))
        return [upload_id for _, upload_id in sorted(found)[:limit]]


class FileState:
    """Everything under the data dir of this one machine."""

    def __init__(self, data_dir: Path) -> None:
        self.status = FileStatusRecords(Path(data_dir) / "status")
        self.webhooks = WebhookLog(Path(data_dir) / "webhooks")

    def count_unfinished(self, owner: str) -> int:
        return self.status.count(owner, UNFINISHED)

    def check_schema(self) -> None:
        pass  # files have no schema to fall behind

    def migrate(self) -> list[str]:
        return []

    def close(self) -> None:
        pass
