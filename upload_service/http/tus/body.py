"""A request body as the stores consume it: chunks, or bytes moved straight into a file.

Iterating gives the body chunk by chunk through the event loop, with an idle
timeout. `to_file` asks the HTTP server to move the bytes from the socket into
a file inside the kernel (see `upload_service.fastpath.protocol`): the local store
uses it for unchecksummed bodies; any other server, or a busy one, says no and
the store iterates instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import anyio
from starlette.requests import ClientDisconnect, Request

from upload_service.core import metrics
from upload_service.core.store.base import UploadInfo
from upload_service.fastpath.splice import BODY_TO_FILE


class Stalled(Exception):
    """The body sent nothing for its idle timeout."""


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


class RequestBody:
    def __init__(self, request: Request, idle_timeout: float | None = None) -> None:
        self.request = request
        self.idle_timeout = idle_timeout
        self._chunks = _chunks(request, idle_timeout)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def to_file(self, open_file: Callable[[], int], limit: int) -> int | None:
        """Move up to `limit` body bytes into the file `open_file()` opens (at its
        position; the server closes it); None if the server can't, before opening.

        Raises ClientDisconnect or Stalled like iterating would; the bytes moved
        before that are in the file either way.
        """
        extension = self.request.scope.get("extensions", {}).get(BODY_TO_FILE)
        if extension is None:
            return None
        result = await extension["to_file"](open_file, limit, self.idle_timeout)
        if result is None:
            return None
        moved, outcome = result
        if outcome == "eof":
            raise ClientDisconnect()
        if outcome == "stalled":
            raise Stalled()
        return int(moved)


async def _chunks(request: Request, idle_timeout: float | None) -> AsyncIterator[bytes]:
    chunks = request.stream().__aiter__()
    while True:
        # The timeout covers only the wait for the next chunk, never a yield.
        with anyio.move_on_after(idle_timeout) as waiting:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
        if waiting.cancelled_caught:
            raise Stalled()
        yield chunk


@contextmanager
def count_stored_bytes(info: UploadInfo) -> Iterator[None]:
    """Adds what a request stored to `upload_bytes_received_total`, however it ended."""
    start = info.offset
    try:
        yield
    finally:
        metrics.BYTES_RECEIVED.inc(max(0, info.offset - start))
