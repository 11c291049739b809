"""A request body as the stores consume it: `request.stream()`, with an idle timeout.

This is the stock body: the bytes come through the event loop chunk by chunk,
and a store with files has them written a batch at a time (core/store/body.py).
The fast path's body (upload_service.fastpath.body) builds on this one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import anyio
from starlette.requests import Request

from upload_service.core import metrics
from upload_service.core.body_rate import RateFloor
from upload_service.core.store.base import UploadInfo
from upload_service.core.store.body import ChunkBody


class Stalled(Exception):
    """The body sent nothing for its idle timeout, or crawled below its rate floor."""


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


class RequestBody(ChunkBody):
    """The request's body; raises Stalled after `idle_timeout` seconds without a
    chunk, or once it falls below `rate_floor`, and starlette's ClientDisconnect
    when the client goes away."""

    def __init__(
        self,
        request: Request,
        idle_timeout: float | None = None,
        rate_floor: RateFloor | None = None,
    ) -> None:
        super().__init__(_chunks(request, idle_timeout, rate_floor))
        self.request = request
        self.idle_timeout = idle_timeout
        self.rate_floor = rate_floor


# How the server makes a request's body (see http/body_path.py):
# (request, idle timeout, minimum pace).
MakeBody = Callable[[Request, float | None, RateFloor | None], RequestBody]


async def _chunks(
    request: Request, idle_timeout: float | None, rate_floor: RateFloor | None
) -> AsyncIterator[bytes]:
    chunks = request.stream().__aiter__()
    pace = rate_floor.start(time.monotonic()) if rate_floor else None
    received = 0
    while True:
        # The timeout covers only the wait for the next chunk, never a yield.
        with anyio.move_on_after(idle_timeout) as waiting:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
        if waiting.cancelled_caught:
            raise Stalled()
        received += len(chunk)
        if pace is not None and pace.too_slow(received, time.monotonic()):
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
