"""Bounded by design, on a live server and on both paths: request heads past a size
or a field count get 431 and a closed connection, a head that takes too long is cut
off, and a body trickled below the minimum rate is cut off with its bytes kept and
its upload's lock released. The header flood prints the server's RSS (figures for
the report, not assertions on time)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer

pytestmark = pytest.mark.one_path

MIB = 1024 * 1024


def rss_of_tree(pid: int) -> int:
    """Resident bytes of `serve` and its worker processes."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def flood(port: int, megabytes: int, answers: list[bytes]) -> None:
    """One connection sending a header of `megabytes` MiB; what the server answered."""
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Flood: ")
        chunk = b"a" * (256 * 1024)
        try:
            for _ in range(megabytes * 4):
                s.sendall(chunk)
        except OSError:
            pass  # closed by the server: the point
        try:
            answers.append(s.recv(4096))
        except OSError:
            answers.append(b"")


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_header_flood_is_refused_with_431_and_memory_stays_bounded(
    server_factory: Callable[..., LiveServer], fast_path: str
) -> None:
    server = server_factory(UPLOAD_FAST_PATH=fast_path, UPLOAD_SERVER_WORKERS="1")
    assert server.process is not None
    before = rss_of_tree(server.process.pid)
    answers: list[bytes] = []
    threads = [threading.Thread(target=flood, args=(server.port, 100, answers)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = rss_of_tree(server.process.pid)
    print(
        f"\nheader flood ({fast_path}): RSS {before / MIB:.1f} MiB before, "
        f"{after / MIB:.1f} MiB after"
    )
    assert len(answers) == 10
    assert all(a.startswith(b"HTTP/1.1 431") for a in answers), answers
    assert b"headers_too_large" in answers[0]
    # Too many fields, each small: refused as well.
    many = "".join(f"X-F{n}: v\r\n" for n in range(150))
    with socket.create_connection(("127.0.0.1", server.port), 10) as s:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 431")
    # An ordinary request is served as ever.
    assert httpx.get(f"{server.url}/healthz").status_code == 200


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_slow_head_is_cut_off(server_factory: Callable[..., LiveServer], fast_path: str) -> None:
    server = server_factory(
        UPLOAD_FAST_PATH=fast_path, UPLOAD_HEADER_TIMEOUT="1", UPLOAD_SERVER_WORKERS="1"
    )
    with socket.create_connection(("127.0.0.1", server.port), 10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        s.settimeout(10)
        answer = s.recv(4096)  # before any timeout of ours: the server answered or closed
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert s.recv(4096) == b""  # and closed
    with socket.create_connection(("127.0.0.1", server.port), 10) as s:
        s.settimeout(10)
        assert s.recv(4096) == b""  # a connection that sends nothing is closed too


def whole_response(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_trickled_body_is_cut_off_its_bytes_kept_and_its_lock_released(
    server_factory: Callable[..., LiveServer], make_token: Callable[..., str], fast_path: str
) -> None:
    server = server_factory(
        UPLOAD_FAST_PATH=fast_path,
        UPLOAD_MIN_BODY_RATE="1000",
        UPLOAD_BODY_RATE_WINDOW="1",
        UPLOAD_SERVER_WORKERS="1",  # one process: no boot health checks to miss under load
    )
    token = make_token()
    tus = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    length = 1024 * 1024  # large enough to be spliced on the fast path
    r = httpx.post(f"{server.url}/files/", headers={**tus, "Upload-Length": str(length)})
    upload_id = r.headers["location"].rsplit("/", 1)[-1]
    first = os.urandom(600 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), 10) as s:
        head = (
            f"PATCH /files/{upload_id} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer {token}\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n"
        )
        s.sendall(head.encode() + first)
        s.settimeout(20)
        answer = b""
        # Then a byte now and then: never idle for UPLOAD_BODY_TIMEOUT, far below the rate.
        for _ in range(40):
            try:
                s.sendall(b"x")
            except OSError:
                break
            try:
                s.settimeout(0.25)
                answer += s.recv(4096)
                if answer:
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        s.settimeout(10)
        while not whole_response(answer):  # head and body may come in separate reads
            more = s.recv(4096)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request_timeout" in answer
    stored = httpx.head(f"{server.url}/files/{upload_id}", headers=tus)
    offset = int(stored.headers["upload-offset"])
    assert offset >= len(first)  # what arrived is kept
    # The lock is free: the client resumes at once from HEAD's offset.
    rest = os.urandom(length - offset)
    r = httpx.patch(
        f"{server.url}/files/{upload_id}",
        headers={
            **tus,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
        content=rest,
    )
    assert r.status_code == 204, r.text
