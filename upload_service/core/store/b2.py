"""B2 store: tus chunks go straight into B2 large-file parts (as tusd's s3store does with S3).

For deployments without a shared disk. Each upload is a folder of objects
(`b2_objects`): its info, its data, and a tail of bytes too few for a part.

Like the local store, the offset is never written down: it is what B2 holds,
sum(parts of the unfinished large file) + tail, or the finished file's size.
A part is only uploaded once more than `part_size` bytes are buffered, and it
takes exactly `part_size` of them, so at least one byte always stays in the
tail: the last part is never empty and a large file always has two parts or
more (B2's rule). The tail names the part count it follows (`file_info`), so a
crash between uploading a part and replacing the tail cannot count bytes twice.

A request buffers at most about one part on local scratch space (not in
memory); a checksummed chunk is spooled whole and only committed once its
digest matched. An unfinished upload can only be read back from its tail:
B2 cannot serve the parts of an unfinished large file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from b2sdk.v2 import B2Api

from upload_service.core.store.b2_objects import MB, READ_BLOCK, B2Objects, B2State
from upload_service.core.store.base import (
    Body,
    ChecksumMismatch,
    Digest,
    UploadInfo,
    UploadNotFound,
)
from upload_service.core.store.body import ChunkBody
from upload_service.core.store.spool import Spool
from upload_service.core.threads import run_remote


class B2Store(B2Objects):
    """tus uploads as B2 large files: parts while bytes arrive, one file once complete."""

    # -- sync halves of the protocol ---------------------------------------

    def _create(self, info: UploadInfo) -> None:
        try:
            self._read_state(info.id, allow_expired=True)
        except UploadNotFound:
            self._put_info(info)
            return
        raise FileExistsError(info.id)

    def _save(self, info: UploadInfo) -> None:
        self._put_info(info)
        state = self._read_state(info.id)
        self._delete(state.stale)
        complete = info.length is not None and state.offset == info.length
        if complete and state.finished_size is None:
            self._complete(state)  # a deferred length that equals what arrived

    def _load_tail(self, upload_id: str, state: B2State) -> Spool:
        spool = Spool(self.spool_dir)
        if state.tail_size:
            name = self._folder(upload_id) + "tail"
            offset = 0
            while offset < state.tail_size:  # in blocks: a tail is up to a part
                end = min(offset + 8 * MB, state.tail_size)
                spool.append(self._download(name, offset, end))
                offset = end
        return spool

    def _flush_parts(self, upload_id: str, state: B2State, spool: Spool) -> Spool:
        """Upload `part_size` bytes as the next part while more than that is buffered."""
        api, bucket = self._b2()
        while spool.size > self.part_size:
            rest = spool.split(self.part_size, self.spool_dir)
            if state.large_file_id is None:
                state.large_file_id = self._start_large_file(upload_id, state.info)
            sha1 = spool.sha1()
            number = len(state.parts) + 1

            def upload_part(spool: Spool = spool, sha1: str = sha1, number: int = number) -> Any:
                spool.file.seek(0)
                return api.session.upload_part(
                    state.large_file_id, number, spool.size, sha1, spool.file
                )

            self._retry(upload_part)
            state.parts.append((spool.size, sha1))
            spool.close()
            spool = rest
        return spool

    def _start_large_file(self, upload_id: str, info: UploadInfo) -> str:
        api, bucket = self._b2()
        name = self._folder(upload_id) + "data"
        content_type = self._content_type(info)
        started = self._retry(
            lambda: api.services.large_file.start_large_file(bucket.id_, name, content_type, {})
        )
        return str(started.file_id)

    def _commit_tail(self, upload_id: str, state: B2State, spool: Spool) -> None:
        """Replace the tail with the spool's bytes, tagged with the part count."""
        _, bucket = self._b2()
        old = self._tail_versions(upload_id)
        if spool.size:
            spool.file.flush()
            name = self._folder(upload_id) + "tail"
            sha1 = spool.sha1()
            self._retry(
                lambda: bucket.upload_local_file(
                    spool.path,
                    name,
                    sha1_sum=sha1,
                    file_info={"parts": str(len(state.parts))},
                    min_part_size=self.part_size,  # under two parts: one plain upload
                )
            )
        state.tail_size = spool.size
        self._delete(old)

    def _complete(self, state: B2State, spool: Spool | None = None) -> None:
        """All bytes are here: make `data` a finished B2 file, drop the tail."""
        api, bucket = self._b2()
        upload_id = state.info.id
        own = spool is None
        spool = spool or self._load_tail(upload_id, state)
        try:
            name = self._folder(upload_id) + "data"
            if state.large_file_id is None:  # never reached a part: one plain upload
                sha1 = spool.sha1()
                spool.file.flush()
                content_type = self._content_type(state.info)
                self._retry(
                    lambda: bucket.upload_local_file(
                        spool.path,
                        name,
                        content_type=content_type,
                        sha1_sum=sha1,
                        min_part_size=self.part_size,
                    )
                )
            else:
                if spool.size:  # the last part, never empty (see the module doc)
                    sha1 = spool.sha1()
                    number = len(state.parts) + 1

                    def upload_last() -> Any:
                        spool.file.seek(0)
                        return api.session.upload_part(
                            state.large_file_id, number, spool.size, sha1, spool.file
                        )

                    self._retry(upload_last)
                    state.parts.append((spool.size, sha1))
                sha1s = [sha1 for _, sha1 in state.parts]
                self._retry(lambda: api.session.finish_large_file(state.large_file_id, sha1s))
        finally:
            if own:
                spool.close()
        state.finished_size = sum(size for size, _ in state.parts) or spool.size
        self._delete(self._tail_versions(upload_id))

    # -- protocol ------------------------------------------------------------

    def path(self, upload_id: str) -> str | None:
        return None

    async def create(self, info: UploadInfo) -> None:
        await run_remote(self._create, info)

    async def get(self, upload_id: str) -> UploadInfo:
        state = await run_remote(self._read_state, upload_id)
        return state.info

    async def save(self, info: UploadInfo) -> None:
        await run_remote(self._save, info)

    async def write(
        self,
        info: UploadInfo,
        body: Body,
        limit: int,
        checksum: tuple[Digest, bytes] | None = None,
    ) -> int:
        state = await run_remote(self._read_state, info.id)
        if state.finished_size is not None:
            return state.finished_size  # complete: nothing may be appended
        state.info = info
        spool = await run_remote(self._load_tail, info.id, state)
        # A checksummed chunk is spooled on its own and joins the rest only
        # once its digest matched: nothing of a bad chunk ever reaches B2.
        staged = Spool(self.spool_dir) if checksum else spool
        received = 0
        try:
            try:
                async for chunk in body:
                    chunk = chunk[: limit - received]
                    if not chunk:
                        if received >= limit:
                            break
                        continue
                    received += len(chunk)
                    if checksum:
                        checksum[0].update(chunk)
                    await run_remote(staged.append, chunk)
                    if not checksum and spool.size > self.part_size:
                        spool = await run_remote(self._flush_parts, info.id, state, spool)
                        staged = spool
                    if received >= limit:
                        break
            except BaseException:
                # A broken stream keeps what arrived, a checksummed chunk nothing.
                with anyio.CancelScope(shield=True):
                    if not checksum:
                        await run_remote(self._commit_tail, info.id, state, spool)
                raise
            if checksum:
                if checksum[0].digest() != checksum[1]:
                    raise ChecksumMismatch()
                staged.file.seek(0)
                while block := staged.file.read(READ_BLOCK):
                    spool.append(block)
            return await run_remote(self._finish_write, info, state, spool)
        finally:
            if staged is not spool:
                staged.close()
            spool.close()

    def _finish_write(self, info: UploadInfo, state: B2State, spool: Spool) -> int:
        spool = self._flush_parts(info.id, state, spool)
        try:
            offset = sum(size for size, _ in state.parts) + spool.size
            if info.length is not None and offset == info.length:
                self._complete(state, spool)
            else:
                self._commit_tail(info.id, state, spool)
            return offset
        finally:
            spool.close()

    async def terminate(self, upload_id: str) -> None:
        def remove() -> None:
            _, bucket = self._b2()
            listing = self._retry(
                lambda: list(bucket.ls(self._folder(upload_id), latest_only=False))
            )
            self._delete([v for v, _ in listing])

        await run_remote(remove)

    async def expire(self, upload_id: str) -> None:
        def sweep() -> None:
            state = self._read_state(upload_id, allow_expired=True)
            state.info.expired = True
            self._put_info(state.info)
            _, bucket = self._b2()
            listing = self._retry(
                lambda: list(bucket.ls(self._folder(upload_id), latest_only=False))
            )
            newest_info = max(
                (v for v, _ in listing if v.file_name.endswith("/info")),
                key=lambda v: v.upload_timestamp,
            )
            self._delete([v for v, _ in listing if v.id_ != newest_info.id_])

        await run_remote(sweep)

    async def concatenate(self, final: UploadInfo, parts: list[UploadInfo]) -> None:
        # Through this process, not B2's copy_part: B2 copies only parts of at
        # least 5 MB, and tus partial uploads may be of any size.
        final.length = sum(p.offset for p in parts)
        await self.save(final)

        async def joined() -> AsyncIterator[bytes]:
            for part in parts:
                async for block in self.open_range(part.id, 0, part.offset):
                    yield block

        final.offset = await self.write(await self.get(final.id), ChunkBody(joined()), final.length)

    async def list_ids(self) -> list[str]:
        def scan() -> list[str]:
            _, bucket = self._b2()
            listing = self._retry(lambda: list(bucket.ls(self.root)))
            return [folder.removeprefix(self.root).rstrip("/") for _, folder in listing if folder]

        return await run_remote(scan)

    async def open_range(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        state = await run_remote(self._read_state, upload_id)
        folder = self._folder(upload_id)
        if state.finished_size is not None:
            name, base = folder + "data", 0
        else:
            name, base = folder + "tail", sum(size for size, _ in state.parts)
            if start < base:
                raise UploadNotFound(f"{upload_id}: unfinished parts cannot be read from B2")
        if start >= end:
            return
        # One ranged GET, read block by block in a thread: bounded memory, and
        # no request per block.
        blocks = await run_remote(self._stream, name, start - base, end - base)
        try:
            while (block := await run_remote(next, blocks, b"")) != b"":
                yield block
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                await run_remote(close)


def b2_store_from_settings(settings: Any, api_factory: Callable[[], B2Api]) -> B2Store:
    prefix = "/".join(p for p in (settings.b2_prefix, "tus") if p)
    return B2Store(
        api_factory,
        settings.b2_bucket,
        prefix=prefix,
        part_size=settings.b2_part_size,
        spool_dir=str(Path(settings.data_dir) / "spool"),
    )
