"""The store protocol: what the tus layer needs from wherever bytes live.

Like tusd's DataStore, the protocol layer only ever sees this interface: create
an upload, read its info (the offset is what the store holds), append a body at
the offset, save a declared length, read the bytes back. The optional
capabilities (termination, concatenation, expiry) are methods every store here
implements, so all tus extensions are always advertised. How a body's bytes
travel is the body's business (body.py), not the store's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# The id rule lives in upload_service.core.ids; imported here too, where it always was.
from upload_service.core.ids import is_safe_id as is_safe_id


class UploadNotFound(LookupError):
    pass


class UploadGone(LookupError):
    """The upload expired: its bytes were swept."""


class ChecksumMismatch(Exception):
    """The chunk's digest differed from the client's; its bytes were discarded."""


@dataclass
class UploadInfo:
    id: str
    owner: str
    length: int | None  # None while the length is deferred
    offset: int = 0
    metadata: dict[str, str | None] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # the token's `meta` claim
    kinds: list[str] | None = None  # the token's `kinds` claim
    concat: str | None = None  # "partial", "final" or None
    parts: list[str] = field(default_factory=list)  # a final upload's partial ids
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    # Set while a checksummed chunk streams in: the offset to roll back to if
    # the process dies before the digest was compared.
    verifying_from: int | None = None
    expired: bool = False  # the sweeper dropped the bytes; the id answers 410

    @property
    def finished(self) -> bool:
        return self.length is not None and self.offset == self.length

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadInfo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class AppendFile(Protocol):
    """The file an append goes into, for stores that have files (local disk).

    Both methods are called from worker threads, by the body's own writes: the
    file is opened at the append's offset by the first write, and finished (closed,
    a checksummed chunk compared) after the last. A body that arrives whole thus
    costs one trip to a thread, where open, write and close took three.
    """

    def fileno(self) -> int:
        """The file, opened at the append's offset on the first call."""
        ...

    def finish(self) -> None:
        """The body has ended: close the file; the chunk's digest decides whether its
        bytes stay. Nothing is written after this."""
        ...


class Body(Protocol):
    """The bytes of one append (see body.py): iterated by stores that take chunks,
    or asked to fill a file by stores that have files."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def write_to(self, file: AppendFile, limit: int, digest: Digest | None = None) -> int:
        """Write at most `limit` bytes into `file`, feeding `digest`; the count
        written. A body that ends may `finish` the file in the thread of its last
        write; the store finishes it otherwise. What ends the body early is raised
        once every byte that arrived before it is in the file."""
        ...


class UploadStore(Protocol):
    async def create(self, info: UploadInfo) -> None: ...

    async def get(self, upload_id: str) -> UploadInfo:
        """The info with `offset` = bytes durably stored; raises UploadNotFound."""
        ...

    async def save(self, info: UploadInfo) -> None:
        """Persist changed info fields (length, metadata); never the offset."""
        ...

    async def write(
        self,
        info: UploadInfo,
        body: Body,
        limit: int,
        checksum: tuple[Digest, bytes] | None = None,
    ) -> int:
        """Append at most `limit` bytes of `body` at `info.offset`.

        Returns the new offset. With a checksum, a mismatch discards every
        byte of this call and raises ChecksumMismatch. A broken stream keeps
        what arrived (tus resumes from there) unless a checksum was given.
        """
        ...

    async def terminate(self, upload_id: str) -> None: ...

    async def concatenate(self, final: UploadInfo, parts: list[UploadInfo]) -> None:
        """Fill `final` with the parts' bytes in order; sets its length and offset."""
        ...

    async def expire(self, upload_id: str) -> None:
        """Drop the bytes of an unfinished upload, keeping its info for 410s."""
        ...

    def path(self, upload_id: str) -> str | None:
        """A local file path of the bytes, when the store has one."""
        ...

    async def list_ids(self) -> list[str]:
        """Every upload's id, expired ones too (what the expiry sweep walks)."""
        ...

    def open_range(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of an upload."""
        ...
