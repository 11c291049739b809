"""Helpers of the tests that drive a live `upload-service serve` over HTTP: tus
requests, downloads, status reads, a PATCH that pauses mid-body, servers with
extra options."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from conftest import API_KEY, LiveServer
from tusclient.client import TusClient

from upload_service.core.settings import Settings

MIB = 1024 * 1024
OCTETS = "application/offset+octet-stream"


def random_file(path: Path, size: int) -> tuple[Path, str]:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MIB))
            digest.update(block)
            f.write(block)
            remaining -= len(block)
    return path, digest.hexdigest()


def tus(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


def create(server: LiveServer, token: str, length: int) -> str:
    r = httpx.post(f"{server.url}/files/", headers=tus(token, **{"Upload-Length": str(length)}))
    assert r.status_code == 201, r.text
    return str(r.headers["location"].rsplit("/", 1)[-1])


def head_offset(server: LiveServer, token: str, upload_id: str) -> int:
    r = httpx.head(f"{server.url}/files/{upload_id}", headers=tus(token))
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])


def downloaded_sha256(server: LiveServer, upload_id: str) -> str:
    """The stored file, fetched by the backend's API key, hashed as it streams."""
    digest = hashlib.sha256()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("GET", f"{server.url}/files/{upload_id}", headers=headers) as r:
        assert r.status_code == 200
        for block in r.iter_bytes():
            digest.update(block)
    return digest.hexdigest()


def status_of(server: LiveServer, upload_id: str) -> dict[str, object]:
    r = httpx.get(
        f"{server.url}/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


@dataclass
class SlowPatch:
    """A PATCH whose body is sent up to `pause_at`, then waits for `go` (or forever)."""

    url: str
    token: str
    offset: int
    data: bytes
    pause_at: int
    go: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    sent: int = 0  # bytes handed to the socket before the pause
    response: httpx.Response | None = None
    error: Exception | None = None
    thread: threading.Thread | None = None

    def body(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), 256 * 1024):
            if start >= self.pause_at and not self.paused.is_set():
                self.sent = start
                self.paused.set()
                self.go.wait()
            yield self.data[start : start + 256 * 1024]

    def run(self) -> None:
        headers = tus(self.token, **{"Upload-Offset": str(self.offset), "Content-Type": OCTETS})
        headers["Content-Length"] = str(len(self.data))
        try:
            self.response = httpx.patch(self.url, content=self.body(), headers=headers, timeout=60)
        except Exception as exc:  # the server died under us: that is the point
            self.error = exc

    def start(self) -> SlowPatch:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        assert self.paused.wait(30), "the client never reached its pause"
        return self

    def finish(self) -> None:
        self.go.set()
        assert self.thread is not None
        self.thread.join(60)
        assert not self.thread.is_alive()


def uploader_client(server: LiveServer, token: str) -> TusClient:
    return TusClient(f"{server.url}/files/", headers={"Authorization": f"Bearer {token}"})


def with_port(url: str, server: LiveServer) -> str:
    return f"{server.url}/files/{url.rsplit('/', 1)[-1]}"


class LiveServerArgs(LiveServer):
    """A LiveServer that passes extra `serve` options (such as --graceful-timeout)."""

    def __init__(self, settings: Settings, args: list[str], port: int | None = None) -> None:
        super().__init__(settings) if port is None else super().__init__(settings, port=port)
        self.args = args

    def command(self) -> list[str]:
        return [*super().command(), *self.args]
