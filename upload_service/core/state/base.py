"""The state interface: what must outlive any one machine and any Redis restart.

Two implementations hold it: local files (`files.py`, one machine, the
default) and PostgreSQL (`postgres.py`, `STATE_URL=postgresql://...`, any
number of machines). Redis sits in front of it as a cache and is never the
only copy of anything listed here.

    StatusRecords  one status object per upload (the contract's JSON), plus the
                   columns the listing and the limits query: owner, state,
                   created_at, updated_at, and a version bumped by every write
    DeliveryLog    every webhook event sent for an upload and every attempt

The state layer is generic about the status object: it stores the whole JSON
body as given and reads only `id`, `owner`, `state`, `created_at` and
`updated_at` out of it, so new fields need no migration.

A change is a read-modify-write that no other change can interleave with
(`StatusRecords.change`): a row lock in PostgreSQL, a file lock on one
machine. A worker's progress write and a DELETE therefore never overwrite
each other; whichever comes second sees the first.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

Record = dict[str, Any]
Event = dict[str, Any]
Attempt = dict[str, Any]

# Ended by the user (DELETE) or by expiry: no worker may write over it again.
ENDED = ("terminated", "expired")
# What counts against a user's limit of uploads in flight: bytes still arriving.
UNFINISHED = ("uploading",)
LIST_LIMIT_MAX = 500
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class UploadEnded(Exception):
    """The upload was terminated or expired while a job was working on it."""

    def __init__(self, upload_id: str, state: str) -> None:
        super().__init__(f"upload {upload_id} is {state}")
        self.upload_id = upload_id
        self.state = state


class SchemaNotCurrent(RuntimeError):
    """The database's schema is older (or newer) than this code's migrations."""


class BadCursor(ValueError):
    """A listing cursor this service did not hand out."""


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).strftime(TIME_FORMAT)


def parse_iso(text: str) -> datetime:
    """The record's own timestamps, and any ISO 8601 time a caller sends."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def encode(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def stamp(record: Record) -> bytes:
    """Set `updated_at` to now and encode: every write goes through here."""
    record["updated_at"] = iso()
    return encode(record)


# -- listing ------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """Uploads oldest first (by creation, then id), after `cursor` when given."""

    owner: str | None = None
    states: tuple[str, ...] = ()
    created_after: datetime | None = None
    cursor: str | None = None
    limit: int = 100

    def position(self) -> tuple[datetime, str] | None:
        return decode_cursor(self.cursor) if self.cursor else None


@dataclass
class Page:
    records: list[Record] = field(default_factory=list)
    next_cursor: str | None = None  # None: this page is the last


def encode_cursor(record: Record) -> str:
    """Opaque to callers: the last record's (created_at, id), base64url."""
    raw = json.dumps([record["created_at"], record["id"]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, upload_id = json.loads(raw)
        return parse_iso(created_at), str(upload_id)
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor("cursor is not one this service handed out") from None


def page_of(records: list[Record], limit: int) -> Page:
    """`records` holds up to limit + 1 rows: one more says another page exists."""
    if len(records) > limit:
        kept = records[:limit]
        return Page(kept, encode_cursor(kept[-1]))
    return Page(records, None)


def sort_key(record: Record) -> tuple[datetime, str]:
    return parse_iso(record["created_at"]), record["id"]


# -- the interfaces -----------------------------------------------------------------

Mutation = Callable[[Record], None]


class StatusRecords(Protocol):
    """Status objects, synchronous (workers call it directly, the server in threads)."""

    def read(self, upload_id: str) -> bytes | None:
        """The stored body, or None."""
        ...

    def write(self, record: Record) -> bytes:
        """Create or replace, stamping `updated_at`; the body written."""
        ...

    def change(self, upload_id: str, mutate: Mutation) -> tuple[Record, bytes]:
        """Read, `mutate` in place, stamp and write, as one step no other change
        interleaves with. KeyError without a record; whatever `mutate` raises
        leaves the record untouched."""
        ...

    def delete(self, upload_id: str) -> bool:
        """Remove the record (a retention sweep's last step); whether it existed."""
        ...

    def page(self, query: ListQuery) -> Page: ...

    def count(self, owner: str, states: Iterable[str] = UNFINISHED) -> int:
        """How many of `owner`'s uploads are in one of `states`."""
        ...

    def list_expired(self, states: Iterable[str], updated_before: float, limit: int) -> list[str]:
        """Ids of records in one of `states`, unchanged since `updated_before`
        (epoch seconds), oldest first: what a retention sweep deletes."""
        ...


class DeliveryLog(Protocol):
    """The webhook attempts log (see webhook_log for its file form)."""

    def record_event(self, event: Event) -> None:
        """Keeps the event's body once, however often it is attempted."""
        ...

    def record_attempt(self, upload_id: str, attempt: Attempt) -> None: ...
    def exists(self, upload_id: str) -> bool: ...
    def find_event(self, upload_id: str, event_id: str) -> Event | None: ...
    def history(self, upload_id: str) -> list[dict[str, Any]]: ...
    def delete(self, upload_id: str) -> None: ...


class State(Protocol):
    @property
    def status(self) -> StatusRecords: ...

    @property
    def webhooks(self) -> DeliveryLog: ...

    def count_unfinished(self, owner: str) -> int:
        """Uploads of `owner` whose bytes are still arriving (per-token limits)."""
        ...

    def check_schema(self) -> None:
        """SchemaNotCurrent unless the storage is ready for this code."""
        ...

    def migrate(self) -> list[str]:
        """Bring the storage's schema up to date; what was applied."""
        ...

    def close(self) -> None: ...


def assemble_history(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in the order they were first recorded, each with its attempts.

    `lines` are the log's entries in order: {"kind": "event", "event": {...}} or
    {"kind": "attempt", "event_id", ...}; both implementations keep that shape.
    """
    events: dict[str, dict[str, Any]] = {}
    orphans: list[Attempt] = []
    for line in lines:
        line = dict(line)
        kind = line.pop("kind", None)
        if kind == "event":
            event = line["event"]
            events.setdefault(event["id"], {**event, "attempts": []})
        elif kind == "attempt":
            entry = events.get(line["event_id"])
            (entry["attempts"] if entry else orphans).append(line)
    for attempt in orphans:  # an attempt whose event line was lost: still show it
        entry = events.setdefault(
            attempt["event_id"],
            {"id": attempt["event_id"], "type": attempt.get("type"), "attempts": []},
        )
        entry["attempts"].append(attempt)
    for entry in events.values():
        last = entry["attempts"][-1] if entry["attempts"] else None
        entry["delivered"] = any(a.get("outcome") == "delivered" for a in entry["attempts"])
        entry["last_outcome"] = last.get("outcome") if last else None
    return list(events.values())
