"""Closing a connection whose request body was not read, so that the client still
hears the answer: a lingering close, as Apache httpd and nginx do it.

A refusal (423: another request holds the upload; 413: past its end) is decided
before the body is read, and a large body cannot be read to the end just to be
thrown away. But closing a socket with unread bytes in its receive buffer makes
the kernel send a reset, which can overtake the answer: tus clients then see
ECONNRESET instead of 423 or 413, and cannot act on it.

So when uvicorn closes such a connection (the refusal says `Connection: close`),
the answer is flushed and the sending side shut (FIN: the client sees the
response end), then what the client still sends is read and dropped, up to
DRAIN_BYTES or DRAIN_SECONDS, before the socket is closed. A client that stops
sending or closes its side ends it sooner.

Both paths use it: their protocols build on `LingeringHttpToolsProtocol` through
http.head_limits.HeadLimits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 5.0


class _LingeringTransport:
    """The transport uvicorn's request cycles see: `close()` lingers while a body is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: LingeringHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering = False

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if not self._protocol.body_unread() or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._protocol.start_draining()

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._raw_transport = transport  # uvloop's is no asyncio.Transport subclass
        self._lingering = _LingeringTransport(transport, self)
        self.transport = self._lingering  # type: ignore[assignment]
        self._drained = -1  # bytes dropped while lingering; -1: not lingering
        self._drain_timer: asyncio.TimerHandle | None = None

    def body_unread(self) -> bool:
        """The current request's body has not all arrived (or was not all parsed)."""
        cycle = self.cycle
        return cycle is not None and cycle.more_body

    def start_draining(self) -> None:
        transport = self._raw_transport
        self._drained = 0
        transport.write_eof()  # after what is buffered: the answer goes out whole
        self.flow.resume_reading()
        self._drain_timer = self.loop.call_later(DRAIN_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._drained < 0:
            super().data_received(data)
            return
        self._drained += len(data)  # dropped, never parsed: nothing more is served here
        if self._drained >= DRAIN_BYTES:
            self._raw_transport.close()

    def eof_received(self) -> None:
        if self._drained >= 0:
            self._raw_transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        super().connection_lost(exc)
