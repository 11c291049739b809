"""uvicorn's httptools protocol with a request-body buffer fit for large uploads.

Stock uvicorn appends every piece read from the socket to a bytearray and hands
the application `bytes(bytearray)`: two extra copies of every uploaded byte, and
reading pauses as soon as 64 KiB wait, so the socket is paused and resumed
(two epoll_ctl calls) for nearly every read; on the event-loop thread, which
is the bottleneck.

Here the pieces are kept as the `bytes` objects the loop already made: a lone
piece reaches the application without any copy, several are joined once.
Reading still pauses once `HIGH_WATER` bytes wait, as in uvicorn (a bigger
threshold cost more CPU: the application then gets several pieces to join), so
memory per connection stays bounded exactly as with uvicorn's own flow control.

Large bodies skip even that: once a request's headers are parsed, a body of
known length gets the ASGI extension `BODY_TO_FILE` in its scope, with which
the application (body.py) has the bytes moved from the socket straight into a
file it opened, in the kernel, by a lane thread (splice.py); the event loop
never sees them:

    moved, outcome = await scope["extensions"][BODY_TO_FILE]["to_file"](
        fd, limit, idle_timeout, rate_floor
    )

It returns None when it cannot (the request is over already): the body is
then read with `receive()` as usual. `outcome` is a splice.Outcome; the bytes
moved are in the file whatever it is.

This subclasses uvicorn internals: pyproject.toml pins uvicorn to the versions
it was checked against, and tests/test_uvicorn_pin.py names what it relies on.
`serve` passes this class to uvicorn as `http=` when UPLOAD_FAST_PATH is on;
importing this module (which uvicorn does in every worker process) also tunes
glibc's malloc, see below.
"""

from __future__ import annotations

import ctypes
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from upload_service.core import metrics
from upload_service.core.body_rate import RateFloor
from upload_service.fastpath.splice import (
    BODY_TO_FILE,
    BodyJob,
    Outcome,
    move_body,
    splice_supported,
)
from upload_service.http.head_limits import HeadLimits

# What of uvicorn's internals this module relies on, by the class that has it
# (instance attributes included). tests/test_uvicorn_pin.py checks them on the
# installed uvicorn; pyproject.toml pins uvicorn to the versions checked.
UVICORN_INTERNALS = {
    "HttpToolsProtocol": (
        "on_headers_complete",
        "on_body",
        "_should_upgrade",
        "cycle",
        "scope",
        "headers",
        "scheme",
        "flow",
        "parser",
        "transport",
    ),
    "RequestResponseCycle": (
        "scope",
        "body",
        "more_body",
        "message_event",
        "disconnected",
        "response_complete",
        "waiting_for_100_continue",
        "keep_alive",
    ),
    "FlowControl": ("pause_reading", "resume_reading"),
}

# Reading pauses once this much body waits for the application (uvicorn's value).
HIGH_WATER = 64 * 1024

# Smaller bodies are cheaper through the event loop than through a thread hop.
SPLICE_MIN = 512 * 1024


def tune_malloc(mmap_threshold: int = 4 * 1024 * 1024, trim_threshold: int = 32 * 1024**2) -> bool:
    """Keep upload-sized buffers (64 KiB to 1 MiB) on the heap and reuse them.

    glibc serves such blocks with fresh mmap()s or grows and trims the heap
    with brk() around them, so the kernel hands out and zeroes new pages for
    every piece of every upload: a native profile showed brk and page faults
    under the copies. Fixed thresholds keep freed blocks for reuse (at most
    `trim_threshold` bytes of free heap are kept). A no-op where the C library
    is not glibc.
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


class UploadHttpToolsProtocol(HeadLimits):
    """uvicorn's httptools protocol, with what the stock path has (bounded heads and a
    lingering close: HeadLimits), the body buffer and the splice hand-off above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_seen = 0  # body bytes of the current request the parser has handed on

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.body_seen = 0
        length = self._spliceable_length()
        if length is not None and self.cycle is not None and self.cycle.scope is self.scope:
            mover = _BodyMover(self, self.cycle, length)
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[BODY_TO_FILE] = {"to_file": mover.to_file}

    def on_body(self, body: bytes) -> None:
        if self._refused:  # HeadLimits refused this request's head
            return
        self.body_seen += len(body)
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

    def _spliceable_length(self) -> int | None:
        """The body's Content-Length when it may be spliced, else None."""
        if self.scheme != "http" or not splice_supported():
            return None  # TLS bytes must be decrypted by the transport
        length = None
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return None
            if name == b"content-length":
                length = int(value)  # httptools already rejected a malformed one
        return length if length is not None and length >= SPLICE_MIN else None

    def restart_parser(self) -> None:
        """After a body was spliced past httptools: the next bytes start a new request."""
        self._start_head()
        self.parser = httptools.HttpRequestParser(self)
        if hasattr(self.parser, "set_dangerous_leniencies"):  # as uvicorn does
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)


class _BodyMover:
    """The `to_file` of one request: its body's remaining bytes, socket to file."""

    def __init__(
        self, protocol: UploadHttpToolsProtocol, cycle: RequestResponseCycle, length: int
    ) -> None:
        self.protocol = protocol
        self.cycle = cycle
        self.length = length

    async def to_file(
        self, fd: int, limit: int, idle_timeout: float | None, rate_floor: RateFloor | None = None
    ) -> tuple[int, Outcome] | None:
        protocol, cycle = self.protocol, self.cycle
        if protocol.cycle is not cycle or cycle.disconnected or cycle.response_complete:
            return None
        sock = protocol.transport.get_extra_info("socket")
        if sock is None:
            return None
        # Stop the event loop reading this socket: from here a lane does.
        protocol.flow.pause_reading()
        if cycle.waiting_for_100_continue and not protocol.transport.is_closing():
            protocol.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        head = bytes(cycle.body)[:limit]  # what the parser already handed on
        cycle.body = bytearray()
        remaining = self.length - protocol.body_seen
        wanted = min(remaining, limit - len(head))
        try:
            moved, outcome = await move_body(
                BodyJob(sock, fd, head, wanted, idle_timeout, rate_floor)
            )
        except OSError:
            # Writing the file failed (a full disk): bytes were taken off the socket
            # past the parser's count, so this connection cannot carry another request.
            cycle.keep_alive = False
            raise
        metrics.BYTES_SPLICED.inc(moved)
        if outcome is Outcome.DONE and wanted == remaining:
            cycle.more_body = False
            cycle.message_event.set()
            if remaining:  # else the parser saw the end itself, maybe a next request too
                protocol.restart_parser()
        else:
            # The parser lost count of this body: the connection cannot carry another request.
            cycle.keep_alive = False
            if outcome is Outcome.EOF:
                protocol.transport.close()
        return len(head) + moved, outcome
