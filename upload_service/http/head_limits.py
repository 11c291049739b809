"""Bounds on request heads, for uvicorn's httptools protocol on both paths.

uvicorn bounds neither the size nor the number of request header fields
(httptools gathers a header in memory until it ends: ten connections sending
100 MB of header each grew a server by a gigabyte), nor the time a client may
take to send them (a connection that sends a byte now and then is held forever).
`HeadLimits` adds, in front of uvicorn's own parsing:

- at most UPLOAD_MAX_HEADER_BYTES bytes of request line and headers, and at most
  UPLOAD_MAX_HEADERS header fields: past either, `431 Request Header Fields Too
  Large` with the service's error body, and the connection is closed;
- at most UPLOAD_HEADER_TIMEOUT seconds from a connection's start (or from the
  end of its previous response) to the end of a request's head: past it, the
  connection is closed (`408` first when part of a head had arrived).

Bodies are bounded elsewhere (the tus layer's stall and minimum-rate checks).
The counting is per message: bytes fed to the parser while a head is incomplete,
checked once the parser has taken them, so a chunk that ends one head and
begins a body is not counted against it.

`BoundedHttpToolsProtocol` is the stock path's protocol (UPLOAD_FAST_PATH=off):
uvicorn's own plus these bounds and nothing else; the fast path's protocol
(fastpath/protocol.py) takes the same mixin.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from upload_service.core.errors import HeadersTooLarge
from upload_service.core.settings import Settings
from upload_service.http.lingering_close import LingeringHttpToolsProtocol

# What of uvicorn's httptools protocol the mixin relies on (tests/test_uvicorn_pin.py).
UVICORN_INTERNALS = (
    "data_received",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "connection_made",
    "connection_lost",
    "transport",
    "loop",
    "cycle",
    "server_state",
)

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@functools.cache
def head_bounds() -> tuple[int, int, float]:
    """(most head bytes, most header fields, head timeout) from the settings; read once
    per process (uvicorn makes a protocol per connection)."""
    settings = Settings.from_env()
    return settings.max_header_bytes, settings.max_headers, settings.header_timeout


def error_response(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, REASONS[status], len(body))
    )
    return head + body


class HeadLimits(LingeringHttpToolsProtocol):
    """uvicorn's httptools protocol, with its request heads bounded (see the module) and
    a lingering close of a connection whose body is unread (http.lingering_close)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.max_headers, self.head_timeout = head_bounds()
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # -- the head's clock ---------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_head:  # a pipelined head may have begun already: its clock runs
            return
        self._arm_head_timer()

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._stop_head_timer()
        if self.head_timeout > 0:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a response still on its way: its head comes after
            return
        if self._head_bytes:
            self.transport.write(
                error_response(
                    408,
                    "request_timeout",
                    f"the request's head took longer than {self.head_timeout:g} s",
                )
            )
        self.transport.close()

    # -- counting -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this chunk (a chunk that ends the head may carry body
        # bytes too): the parser holds at most one read's worth past the bound.
        if self._in_head and self._head_bytes > self.max_head_bytes and not self._refused:
            self._refuse(f"the request's head is over {self.max_head_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refuse(f"the request has over {self.max_headers} header fields")
            return
        super().on_header(name, value)

    # The parser goes on through the rest of a chunk after a refusal: nothing of it
    # may reach the application.
    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True  # the next bytes start the next request's head
        self._head_bytes = 0
        self._header_count = 0
        if self.cycle is None or self.cycle.response_complete:
            self._arm_head_timer()  # answered before its body ended: the clock starts now

    def _refuse(self, message: str) -> None:
        self._refused = True
        self._stop_head_timer()
        if not self.transport.is_closing():
            error = HeadersTooLarge
            self.transport.write(error_response(error.status, error.code, message))
            self.transport.close()


class BoundedHttpToolsProtocol(HeadLimits):
    """The stock path's protocol: uvicorn's own, with bounded request heads and a
    lingering close."""
