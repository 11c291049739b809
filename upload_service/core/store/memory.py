"""In-memory store for protocol tests: same contract as LocalStore, no disk."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator

from upload_service.core.store.base import (
    Body,
    ChecksumMismatch,
    Digest,
    UploadGone,
    UploadInfo,
    UploadNotFound,
)


class MemoryStore:
    def __init__(self) -> None:
        self._infos: dict[str, UploadInfo] = {}
        self._data: dict[str, bytearray] = {}

    def path(self, upload_id: str) -> str | None:
        return None

    def _info(self, upload_id: str) -> UploadInfo:
        try:
            info = self._infos[upload_id]
        except KeyError:
            raise UploadNotFound(upload_id) from None
        if info.expired:
            raise UploadGone(upload_id)
        return info

    async def create(self, info: UploadInfo) -> None:
        if info.id in self._infos:
            raise FileExistsError(info.id)
        self._infos[info.id] = copy.deepcopy(info)
        self._data[info.id] = bytearray()

    async def get(self, upload_id: str) -> UploadInfo:
        info = copy.deepcopy(self._info(upload_id))
        info.offset = len(self._data[upload_id])
        if info.verifying_from is not None:  # a checksummed chunk is still arriving
            info.offset = info.verifying_from
        return info

    async def save(self, info: UploadInfo) -> None:
        stored = copy.deepcopy(info)
        stored.updated_at = time.time()
        self._infos[info.id] = stored

    async def write(
        self,
        info: UploadInfo,
        body: Body,
        limit: int,
        checksum: tuple[Digest, bytes] | None = None,
    ) -> int:
        data = self._data[info.id]
        start = len(data)
        if checksum:
            self._infos[info.id].verifying_from = start
        try:
            async for chunk in body:
                chunk = chunk[: limit - (len(data) - start)]
                if checksum:
                    checksum[0].update(chunk)
                data += chunk
                if len(data) - start >= limit:
                    break
        except BaseException:
            if checksum:
                del data[start:]
            raise
        finally:
            if info.id in self._infos:
                self._infos[info.id].verifying_from = None
        if checksum and checksum[0].digest() != checksum[1]:
            del data[start:]
            raise ChecksumMismatch()
        self._infos[info.id].updated_at = time.time()
        return len(data)

    async def terminate(self, upload_id: str) -> None:
        self._infos.pop(upload_id, None)
        self._data.pop(upload_id, None)

    async def expire(self, upload_id: str) -> None:
        self._infos[upload_id].expired = True
        self._data[upload_id] = bytearray()

    async def concatenate(self, final: UploadInfo, parts: list[UploadInfo]) -> None:
        joined = bytearray()
        for part in parts:
            joined += self._data[part.id]
        self._data[final.id] = joined
        final.length = final.offset = len(joined)
        await self.save(final)

    async def list_ids(self) -> list[str]:
        return list(self._infos)

    async def open_range(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        yield bytes(self._data[upload_id][start:end])
