"""What the protocol layer tells the rest of the service, like tusd's hooks."""

from __future__ import annotations

from typing import Protocol

from upload_service.core.store.base import UploadInfo


class UploadHooks(Protocol):
    async def created(self, info: UploadInfo) -> None: ...

    async def progressed(self, info: UploadInfo, broke_off: bool = False) -> None:
        """An append ended with `info.offset` stored; `broke_off`: before its end (a
        stall, a shutdown, a full disk), so the client is told to resume from there."""
        ...

    async def finished(self, info: UploadInfo) -> None:
        """The last byte arrived: record it and hand it to the pipeline (no waiting)."""
        ...

    async def terminated(self, info: UploadInfo) -> None: ...

    async def discarded(self, info: UploadInfo) -> None:
        """A creation failed half-way (its client got an error, never its URL): forget
        whatever `created` may have recorded, as if it had never begun."""
        ...


class NoHooks:
    async def created(self, info: UploadInfo) -> None:
        pass

    async def progressed(self, info: UploadInfo, broke_off: bool = False) -> None:
        pass

    async def finished(self, info: UploadInfo) -> None:
        pass

    async def terminated(self, info: UploadInfo) -> None:
        pass

    async def discarded(self, info: UploadInfo) -> None:
        pass
