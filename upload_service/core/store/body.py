"""The bytes of one append, as a store consumes them, and how they reach a file.

A store either iterates a body chunk by chunk (B2, memory) or hands it the file
where the bytes go (local disk, an `AppendFile`): how the bytes travel is the
body's business. `ChunkBody` is a body given as chunks; it writes them
double-buffered, a batch in a worker thread while the next batch is read, and
finishes the file in the thread of its last batch: a small body is opened,
written and closed in one trip. The HTTP layer's bodies build on it, and the
fast path's body moves bytes socket to file in the kernel instead
(upload_service.fastpath).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator

import anyio

from upload_service.core.store.base import AppendFile, Digest
from upload_service.core.threads import run_write

# Chunks are gathered up to this size, then written with one writev() while the
# next batch is read: memory stays at about two batches per upload, and there
# are few thread hops.
WRITE_BATCH = 1024 * 1024


class BodyTooLarge(Exception):
    """The body goes on past the room it was given (a chunked body, whose length
    nobody announced): none of the chunk that crosses was passed on."""


class ChunkBody:
    """A body given as an async iterable of chunks."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks.__aiter__()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    def bound(self, room: int) -> None:
        """From now on, a chunk that would take the body past `room` bytes raises
        BodyTooLarge instead of being handed on: stores stop at their limit, and
        would otherwise drop the rest of a too long body without a word."""
        self._chunks = _bounded(self._chunks, room)

    async def goes_on(self) -> bool:
        """After a store took all the room it had: whether the body has more bytes."""
        try:
            async for chunk in self._chunks:
                if chunk:
                    return True
        except BodyTooLarge:
            return True
        return False

    async def write_to(self, file: AppendFile, limit: int, digest: Digest | None = None) -> int:
        """Write at most `limit` bytes into `file`, feeding `digest`, and finish it;
        returns how many were written.

        Whatever ends the body early (the client gone, a stall, a cancelled
        request) is raised once every byte that arrived before it is written,
        the file left for the store to finish: offsets are file sizes, and a
        resume starts from there.
        """
        writer = _BatchWriter(file, digest)
        batch: list[bytes] = []
        size = 0  # of `batch`
        try:
            async for chunk in self:
                room = limit - writer.queued - size
                if len(chunk) > room:
                    chunk = chunk[:room]
                if chunk:
                    batch.append(chunk)
                    size += len(chunk)
                if size >= WRITE_BATCH:
                    await writer.submit(batch)
                    batch, size = [], 0
                if writer.queued + size >= limit:
                    break
            await writer.submit(batch, last=True)
            batch = []
            await writer.drain()
        except BaseException:
            # Shielded: a cancelled request still lets its last bytes land. A
            # failing write (disk full) must not hide what ended the body.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                if batch:
                    await writer.submit(batch)
                await writer.drain()
            raise
        return writer.written


async def _bounded(chunks: AsyncIterator[bytes], room: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > room:
            raise BodyTooLarge()
        yield chunk


class _BatchWriter:
    """Writes batches in a worker thread, one at a time, while the caller reads the next.

    Memory stays bounded at two batches: `submit` first waits for the write in flight.
    """

    def __init__(self, file: AppendFile, digest: Digest | None) -> None:
        self.file = file
        self.digest = digest
        self.queued = 0  # bytes handed to the thread, written or in flight
        self.written = 0
        self._pending: asyncio.Future[int] | None = None

    async def submit(self, batch: list[bytes], last: bool = False) -> None:
        """Write `batch` next; `last`: then finish the file, in the same thread."""
        await self.drain()
        self.queued += sum(len(c) for c in batch)
        # A task of its own, not part of the request: cancelling the request
        # must not abandon a write that is already running in its thread.
        self._pending = asyncio.ensure_future(
            run_write(_write_all, self.file, batch, self.digest, last)
        )

    async def drain(self) -> None:
        pending = self._pending
        if pending is None:
            return
        try:
            self.written += await asyncio.shield(pending)
        finally:
            if pending.done():  # not when only our wait was cancelled
                self._pending = None


def _write_all(file: AppendFile, batch: list[bytes], digest: Digest | None, last: bool) -> int:
    total = sum(len(c) for c in batch)
    if total:
        if digest is not None:
            for chunk in batch:  # hashlib releases the GIL on large buffers
                digest.update(chunk)
        fd = file.fileno()
        done = os.writev(fd, batch)
        if done < total:  # rare short write: finish it byte-exactly
            rest = memoryview(b"".join(batch))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]
    if last:
        file.finish()
    return total
