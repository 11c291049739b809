"""Helpers of the store tests: upload infos, bodies (whole, broken, stalling), reads."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from b2_helpers import PART, FakeB2

from upload_service.core.store import LocalStore, MemoryStore, UploadInfo, UploadStore
from upload_service.core.store.b2 import B2Store
from upload_service.core.store.body import ChunkBody

STORE_KINDS = ["local", "memory", "b2"]


def make_store(kind: str, tmp_path: Path, fake_b2: FakeB2) -> UploadStore:
    if kind == "local":
        return LocalStore(tmp_path / "uploads")
    if kind == "memory":
        return MemoryStore()
    return b2_store(fake_b2)


def b2_store(fake_b2: FakeB2) -> B2Store:
    """A B2 store on the simulated account: another server process, when made twice."""
    return B2Store(lambda: fake_b2.api, fake_b2.bucket.name, prefix="tus", part_size=PART)


def new_info(upload_id: str = "up1", length: int | None = 10, **fields: object) -> UploadInfo:
    return UploadInfo(id=upload_id, owner="user-1", length=length, **fields)  # type: ignore[arg-type]


def chunks(*parts: bytes) -> ChunkBody:
    async def each() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    return ChunkBody(each())


def pieces(data: bytes, size: int) -> ChunkBody:
    """`data` in chunks of `size` bytes."""
    return chunks(*(data[i : i + size] for i in range(0, len(data), size)))


class Broken(Exception):
    pass


def broken_after(*parts: bytes) -> ChunkBody:
    """A body that sends `parts`, then breaks as a dropped connection does."""

    async def each() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
        raise Broken("the client went away")

    return ChunkBody(each())


async def read_all(store: UploadStore, upload_id: str) -> bytes:
    info = await store.get(upload_id)
    return b"".join([b async for b in store.open_range(upload_id, 0, info.offset)])


def sha256(data: bytes) -> tuple[hashlib._Hash, bytes]:
    return hashlib.sha256(), hashlib.sha256(data).digest()
