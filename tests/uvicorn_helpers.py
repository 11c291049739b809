"""Helpers of the HTTP protocol tests: a uvicorn protocol on a transport the test drives."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes and whether it wants the socket read."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.written = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False  # as a TLS transport: a lingering close then closes at once

    def close(self) -> None:
        pass


def connected(
    app: Any, http: str | type[asyncio.Protocol] = HttpToolsProtocol
) -> tuple[Any, FakeTransport]:
    """A protocol uvicorn would make for `http` (its `http=` setting), serving `app`
    on a fresh connection; must be called with an event loop running."""
    config = Config(app=app, http=http, log_config=None, lifespan="off")
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def request_head(method: str, path: str, length: int, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
