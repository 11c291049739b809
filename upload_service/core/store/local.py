"""Local-disk store: `<dir>/<id>` holds the bytes, `<id>.info` a small JSON record.

Crash safety comes from the layout, not from bookkeeping: the offset is the
data file's size, so whatever `write(2)` accepted before a SIGKILL is exactly
what HEAD reports after a restart. The info record changes rarely and is always
replaced atomically (write a temp file, rename). A checksummed chunk first
records where it started: reads never count an unverified chunk, and the
next write (which holds the upload's lock) cuts off what a dead writer left.

The store opens the data file at the offset and closes it; the body fills it
(body.py). Every file operation runs in a worker thread.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from upload_service.core.ids import UnsafeId, safe_child
from upload_service.core.store.base import (
    Body,
    ChecksumMismatch,
    Digest,
    UploadGone,
    UploadInfo,
    UploadNotFound,
)
from upload_service.core.store.body import WRITE_BATCH as WRITE_BATCH
from upload_service.core.threads import run_blocking, run_read

# WRITE_BATCH, the size bodies are written in, is re-exported for bench/upload_suites.py.
READ_BLOCK = 256 * 1024


def atomic_write_json(path: Path, data: object) -> None:
    atomic_write_bytes(path, json.dumps(data, separators=(",", ":")).encode())


def atomic_write_bytes(path: Path, body: bytes) -> None:
    """Replace `path` with `body` so that readers see the old or the new file, never half.

    One write of ready bytes: `json.dump` into a file runs the pure-Python
    encoder piece by piece, and profiling 100 concurrent uploads showed it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # A full disk fails the write: no half-written temp file is left behind.
        tmp.unlink(missing_ok=True)
        raise


class LocalStore:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    # -- paths -------------------------------------------------------------
    def _data(self, upload_id: str) -> Path:
        try:
            return safe_child(self.directory, upload_id)
        except UnsafeId:
            raise UploadNotFound(upload_id) from None

    def _info(self, upload_id: str) -> Path:
        return self._data(upload_id).with_name(f"{upload_id}.info")

    def path(self, upload_id: str) -> str | None:
        return str(self._data(upload_id))

    # -- sync helpers (run in threads) -------------------------------------
    def _read(self, upload_id: str) -> UploadInfo:
        try:
            info = UploadInfo.from_json(json.loads(self._info(upload_id).read_text()))
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        if info.expired:
            raise UploadGone(upload_id)
        st = os.stat(self._data(upload_id))
        info.offset = st.st_size
        if info.verifying_from is not None:
            # A checksummed chunk is arriving, or its writer died: its digest
            # was not compared yet, so none of it counts. Only report that here:
            # a reader holds no lock, and truncating would punch a hole in a
            # live writer's file. The next write (under the lock) truncates.
            info.offset = min(info.offset, info.verifying_from)
        info.updated_at = max(info.updated_at, st.st_mtime)
        return info

    def _save(self, info: UploadInfo) -> None:
        atomic_write_json(self._info(info.id), info.to_json())

    def _create(self, info: UploadInfo) -> None:
        # O_EXCL: ids are random, but never overwrite an existing upload.
        data = self._data(info.id)
        fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.close(fd)
        try:
            self._save(info)
        except BaseException:
            data.unlink(missing_ok=True)  # a data file without its record: nobody's
            raise

    # -- protocol ----------------------------------------------------------
    async def create(self, info: UploadInfo) -> None:
        await run_blocking(self._create, info)

    async def get(self, upload_id: str) -> UploadInfo:
        return await run_read(self._read, upload_id)

    async def save(self, info: UploadInfo) -> None:
        await run_blocking(self._save, info)

    async def write(
        self,
        info: UploadInfo,
        body: Body,
        limit: int,
        checksum: tuple[Digest, bytes] | None = None,
    ) -> int:
        start = info.offset
        file = _AppendFile(self, info, checksum)
        try:
            written = await body.write_to(file, limit, checksum[0] if checksum else None)
            if not file.closed:  # a body that does not finish its file (a spliced one)
                await run_blocking(file.finish)
        except BaseException:
            # A dropped connection or a shutdown keeps what arrived (the body
            # wrote it), except for a checksummed chunk, which is all or nothing.
            # Shielded: a cancelled request must still close its file.
            with anyio.CancelScope(shield=True):
                await run_blocking(file.abort)
            raise
        if file.mismatch:
            raise ChecksumMismatch()
        return start + written

    def _open_for_append(self, upload_id: str, offset: int) -> int:
        fd = os.open(self._data(upload_id), os.O_WRONLY)
        if os.fstat(fd).st_size > offset:
            os.ftruncate(fd, offset)  # a dead writer's unverified chunk
        os.lseek(fd, offset, os.SEEK_SET)
        return fd

    async def terminate(self, upload_id: str) -> None:
        def remove() -> None:
            for p in (self._data(upload_id), self._info(upload_id)):
                p.unlink(missing_ok=True)

        await run_blocking(remove)

    async def expire(self, upload_id: str) -> None:
        def sweep() -> None:
            info = UploadInfo.from_json(json.loads(self._info(upload_id).read_text()))
            info.expired = True
            self._save(info)
            self._data(upload_id).unlink(missing_ok=True)

        await run_blocking(sweep)

    async def concatenate(self, final: UploadInfo, parts: list[UploadInfo]) -> None:
        def join() -> int:
            with open(self._data(final.id), "wb") as out:
                for part in parts:
                    with open(self._data(part.id), "rb") as src:
                        _copy_file(src.fileno(), out.fileno(), part.offset)
            return sum(p.offset for p in parts)

        total = await run_blocking(join)
        final.length = final.offset = total
        await self.save(final)

    async def list_ids(self) -> list[str]:
        def scan() -> list[str]:
            return [p.name[: -len(".info")] for p in self.directory.glob("*.info")]

        return await run_blocking(scan)

    async def open_range(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        f = await run_blocking(open, self._data(upload_id), "rb")
        try:
            await run_blocking(f.seek, start)
            remaining = end - start
            while remaining > 0:
                block = await run_blocking(f.read, min(READ_BLOCK, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield block
        finally:
            await run_blocking(f.close)


class _AppendFile:
    """One append's data file (the `AppendFile` a body fills), in worker threads.

    A checksummed chunk first records where it starts (`verifying_from`), in the
    same trip as the open: reads never count it until its digest is compared.
    """

    def __init__(
        self, store: LocalStore, info: UploadInfo, checksum: tuple[Digest, bytes] | None
    ) -> None:
        self.store = store
        self.info = info
        self.start = info.offset
        self.checksum = checksum
        self.fd: int | None = None
        self.closed = False
        self.mismatch = False

    def fileno(self) -> int:
        if self.fd is None:
            if self.checksum is not None:
                self.info.verifying_from = self.start
                self.store._save(self.info)
            self.fd = self.store._open_for_append(self.info.id, self.start)
        return self.fd

    def finish(self) -> None:
        """The body ended: its bytes stay, unless its digest is not the one announced."""
        if self.checksum is not None:
            digest, expected = self.checksum
            self.mismatch = digest.digest() != expected
        self._close(rollback=self.mismatch)

    def abort(self) -> None:
        """The body broke off: what arrived stays, but for a checksummed chunk."""
        self._close(rollback=self.checksum is not None)

    def _close(self, rollback: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self.fd is None and self.info.verifying_from is None:
            return  # nothing written, and no dead writer's chunk to cut off
        # Opening (when nothing was written) cuts what a dead writer left past the offset.
        fd = (
            self.fd
            if self.fd is not None
            else self.store._open_for_append(self.info.id, self.start)
        )
        try:
            if rollback:
                os.ftruncate(fd, self.start)
        finally:
            os.close(fd)
        if self.info.verifying_from is not None:
            self.info.verifying_from = None
            self.store._save(self.info)


def _copy_file(src: int, dst: int, count: int) -> None:
    # copy_file_range keeps the bytes in the kernel: no trip through Python memory.
    remaining = count
    while remaining > 0:
        try:
            n = os.copy_file_range(src, dst, min(remaining, 1 << 30))
        except OSError:
            n = os.sendfile(dst, src, None, min(remaining, 1 << 30))
        if n == 0:
            raise OSError("source ended early during concatenation")
        remaining -= n
