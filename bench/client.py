"""A small blocking tus client for the benchmarks: raw HTTP/1.1 over one keep-alive
socket, request bodies sent with sendfile(2).

Why not httpx or tuspy: on two shared cores a Python client that copies every
byte would eat the CPU the server needs and measure itself. sendfile keeps the
client almost free, and the same client drives every server, so ratios are fair.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from .procs import TOKEN_SECRET


def make_token(sub: str = "bench-user") -> str:
    from client_sdk import mint_upload_token

    return mint_upload_token(TOKEN_SECRET, sub, ttl=24 * 3600)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    last_byte_at: float  # perf_counter when the body was handed to the kernel
    answered_at: float  # perf_counter when the status line arrived


class Connection:
    def __init__(self, port: int, sndbuf: int | None = None, timeout: float = 120.0) -> None:
        self.port = port
        # A server that stops answering fails the run instead of hanging it.
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sndbuf:
            # A small send buffer makes "the last byte left the client" close to
            # "the server has read it": used to time the final response.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: tuple[int, int, int, int] | None = None,
    ) -> Response:
        """`body` is (fd, offset, count, repeat): `count` bytes at `offset`, `repeat` times."""
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        length = body[2] * body[3] if body else 0
        if body or method in ("POST", "PATCH"):
            head.append(f"Content-Length: {length}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if body:
            fd, offset, count, repeat = body
            with os.fdopen(os.dup(fd), "rb") as f:
                for _ in range(repeat):
                    self.sock.sendfile(f, offset, count)
        sent = time.perf_counter()
        return self._read_response(sent, method == "HEAD")

    def _read_response(self, sent: float, head_only: bool) -> Response:
        answered = 0.0
        while b"\r\n\r\n" not in self._buf:
            data = self.sock.recv(65536)
            if not answered:
                answered = time.perf_counter()
            if not data:
                raise ConnectionError("the server closed the connection")
            self._buf += data
        raw, _, self._buf = self._buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if head_only:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", ""):
            body = self._read_chunked()
        else:
            body = self._read_exactly(int(headers.get("content-length", "0")))
        return Response(status, headers, body, sent, answered)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection mid-body")
        self._buf += data

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        body, self._buf = self._buf[:size], self._buf[size:]
        return body

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            while b"\r\n" not in self._buf:
                self._fill()
            line, _, self._buf = self._buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            parts.append(self._read_exactly(size + 2)[:size])
            if size == 0:
                return b"".join(parts)


def tus_headers(token: str | None, **extra: str) -> dict[str, str]:
    headers = {"Tus-Resumable": "1.0.0", **extra}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def create(conn: Connection, base: str, token: str | None, length: int) -> str:
    """POST a new upload; returns its path."""
    r = conn.request("POST", base, tus_headers(token, **{"Upload-Length": str(length)}))
    if r.status != 201:
        raise RuntimeError(f"creation answered {r.status}: {r.body[:200]!r}")
    location = r.headers["location"]
    return "/" + location.split("://", 1)[-1].split("/", 1)[1]


def patch(
    conn: Connection,
    path: str,
    token: str | None,
    offset: int,
    body: tuple[int, int, int, int],
) -> Response:
    headers = tus_headers(
        token,
        **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
    )
    r = conn.request("PATCH", path, headers, body)
    if r.status != 204:
        raise RuntimeError(f"PATCH answered {r.status}: {r.body[:200]!r}")
    return r


def upload(
    port: int,
    base: str,
    token: str | None,
    fd: int,
    size: int,
    chunk: int | None = None,
    repeat: int = 1,
    sndbuf: int | None = None,
) -> tuple[float, Response]:
    """Upload `size` bytes of `fd` (`repeat` times over) in one PATCH or in `chunk`s.

    Returns the seconds from the first body byte to the last response, and that response.
    """
    total = size * repeat
    with Connection(port, sndbuf) as conn:
        path = create(conn, base, token, total)
        started = time.perf_counter()
        if chunk is None:
            last = patch(conn, path, token, 0, (fd, 0, size, repeat))
        else:
            assert repeat == 1
            offset = 0
            while offset < total:
                n = min(chunk, total - offset)
                last = patch(conn, path, token, offset, (fd, offset, n, 1))
                offset += n
        elapsed = time.perf_counter() - started
    if int(last.headers["upload-offset"]) != total:
        raise RuntimeError(f"upload ended at {last.headers['upload-offset']}, not {total}")
    return elapsed, last
