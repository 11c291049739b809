"""uvicorn's httptools protocol with a request-body buffer fit for large uploads.

Stock uvicorn appends every piece read from the socket to a bytearray and hands
the application `bytes(bytearray)`: two extra copies of every uploaded byte, and
reading pauses as soon as 64 KiB wait, so the socket is paused and resumed
(two epoll_ctl calls) for nearly every read. Profiling a 1 GiB PATCH showed that
copying and churn on the event-loop thread, which is the bottleneck.

Here the pieces are kept as the `bytes` objects the loop already made: a lone
piece reaches the application without any copy, several are joined once.
Reading still pauses once `HIGH_WATER` bytes wait, as in uvicorn: a bigger
threshold (512 KiB) was measured and cost more CPU, because the application
then gets several pieces that must be joined. Memory per connection stays
bounded exactly as with uvicorn's own flow control.

`serve` passes this class to uvicorn as `http=`; importing this module (which
uvicorn does in every worker process) also tunes glibc's malloc, see below.
"""

from __future__ import annotations

import ctypes
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Reading pauses once this much body waits for the application (uvicorn's value).
HIGH_WATER = 64 * 1024


def tune_malloc(mmap_threshold: int = 4 * 1024 * 1024, trim_threshold: int = 32 * 1024**2) -> bool:
    """Keep upload-sized buffers (64 KiB to 1 MiB) on the heap and reuse them.

    glibc serves such blocks with fresh mmap()s or grows and trims the heap
    with brk() around them, so the kernel hands out and zeroes new pages for
    every piece of every upload: a native profile showed brk and page faults
    under the copies. Fixed thresholds keep freed blocks for reuse (at most
    `trim_threshold` bytes of free heap are kept); measured: 1.63 -> 1.41 CPU
    seconds per GiB uploaded. A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold)
    )


tune_malloc()


class _Pieces:
    """What uvicorn's cycle uses as `body`: `+=`, `len()` and `bytes()` are all it needs."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def append(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.size += len(piece)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.pieces) == 1:
            return self.pieces[0]  # already bytes: no copy
        return b"".join(self.pieces)


class UploadHttpToolsProtocol(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        pending: Any = cycle.body
        if not isinstance(pending, _Pieces):
            # uvicorn resets the body to a fresh bytearray after each receive().
            fresh = _Pieces()
            if pending:
                fresh.append(bytes(pending))
            pending = cycle.body = fresh  # type: ignore[assignment]
        # httptools may hand out a view of its read buffer; keep real bytes.
        pending.append(body if type(body) is bytes else bytes(body))
        if pending.size > HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()
