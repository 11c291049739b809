"""Large PATCH bodies through a real `upload-service serve`: with the fast path on,
the protocol hands them to the splice lanes, and the tus semantics stay whole
around that shortcut: the connection carries the next request, `Expect:
100-continue` is answered, a dropped or stalled body keeps what arrived. With it
off (UPLOAD_FAST_PATH=off), uvicorn's own protocol serves the same, and nothing
is spliced."""

from __future__ import annotations

import http.client
import os
import re
import socket
import time
import urllib.request
from collections.abc import Callable

from conftest import FAST_PATH, LiveServer

from upload_service.fastpath.protocol import SPLICE_MIN

MIB = 1024 * 1024
Token = Callable[..., str]


def tus_headers(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


def create(conn: http.client.HTTPConnection, token: str, length: int) -> str:
    conn.request("POST", "/files/", headers=tus_headers(token, **{"Upload-Length": str(length)}))
    response = conn.getresponse()
    response.read()
    assert response.status == 201
    return response.headers["Location"].rsplit("/", 1)[-1]


def new_upload(server: LiveServer, token: str, length: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        return create(conn, token, length)
    finally:
        conn.close()


def patch_headers(token: str, offset: int, length: int) -> dict[str, str]:
    return tus_headers(
        token,
        **{
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(length),
        },
    )


def counter(server: LiveServer, name: str) -> float:
    metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    assert found, f"{name} is missing from /metrics"
    return float(found.group(1))


def spliced_bytes(server: LiveServer) -> float:
    return counter(server, "upload_bytes_spliced_total")


def assert_spliced_only_on_the_fast_path(server: LiveServer) -> None:
    """The lanes moved bytes when the fast path is on, and never when it is off."""
    if FAST_PATH:
        assert spliced_bytes(server) > 0
    else:
        assert spliced_bytes(server) == 0


def stored(server: LiveServer, upload_id: str) -> bytes:
    return (server.settings.uploads_dir / upload_id).read_bytes()


def head_offset(server: LiveServer, token: str, upload_id: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("HEAD", f"/files/{upload_id}", headers=tus_headers(token))
    response = conn.getresponse()
    conn.close()
    assert response.status == 200
    return int(response.headers["Upload-Offset"])


def raw_patch(server: LiveServer, token: str, upload_id: str, length: int) -> socket.socket:
    """A PATCH whose headers are sent and whose body is left to the caller."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    lines = [f"PATCH /files/{upload_id} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in patch_headers(token, 0, length).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def test_spliced_bodies_land_whole_and_the_connection_carries_the_next_requests(
    live_server: LiveServer, make_token: Token
) -> None:
    token = make_token()
    first, second = os.urandom(3 * MIB + 11), os.urandom(2 * MIB)
    before = spliced_bytes(live_server)
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=30)
    upload_id = create(conn, token, len(first) + len(second))
    sock_before = conn.sock
    offset = 0
    for body in (first, second):
        conn.request("PATCH", f"/files/{upload_id}", body, patch_headers(token, offset, len(body)))
        response = conn.getresponse()
        response.read()
        assert response.status == 204
        offset += len(body)
        assert response.headers["Upload-Offset"] == str(offset)
    conn.request("HEAD", f"/files/{upload_id}", headers=tus_headers(token))
    response = conn.getresponse()
    assert response.headers["Upload-Offset"] == str(offset)
    assert conn.sock is sock_before  # one keep-alive connection for all four requests
    conn.close()
    assert stored(live_server, upload_id) == first + second
    if FAST_PATH:
        # The bodies went through the lanes (less what the parser read with the headers).
        assert spliced_bytes(live_server) - before > len(first) + len(second) - 2 * SPLICE_MIN
    else:
        assert spliced_bytes(live_server) == 0
    # And the service's own counters saw the upload (this server served only it).
    assert counter(live_server, "upload_bytes_received_total") == len(first) + len(second)
    assert counter(live_server, "upload_created_total") == 1
    assert counter(live_server, "upload_finished_total") == 1


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    live_server: LiveServer, make_token: Token
) -> None:
    token = make_token()
    body = os.urandom(2 * MIB)
    upload_id = new_upload(live_server, token, len(body))
    sock = socket.create_connection(("127.0.0.1", live_server.port), timeout=30)
    lines = [f"PATCH /files/{upload_id} HTTP/1.1", "Host: t", "Expect: 100-continue"]
    lines += [f"{k}: {v}" for k, v in patch_headers(token, 0, len(body)).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(body)
    assert sock.recv(1000).startswith(b"HTTP/1.1 204")
    sock.close()
    assert stored(live_server, upload_id) == body
    assert_spliced_only_on_the_fast_path(live_server)


def test_a_body_cut_off_midway_keeps_every_byte_that_arrived(
    live_server: LiveServer, make_token: Token
) -> None:
    token = make_token()
    sent = os.urandom(3 * MIB)
    upload_id = new_upload(live_server, token, 8 * MIB)
    sock = raw_patch(live_server, token, upload_id, 8 * MIB)
    sock.sendall(sent)
    sock.close()  # the laptop lid closes
    deadline = time.monotonic() + 20
    while head_offset(live_server, token, upload_id) != len(sent):
        assert time.monotonic() < deadline, "the offset never reached what was sent"
        time.sleep(0.05)
    assert stored(live_server, upload_id) == sent
    # And the upload resumes from there on a new connection.
    rest = os.urandom(8 * MIB - len(sent))
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=30)
    conn.request("PATCH", f"/files/{upload_id}", rest, patch_headers(token, len(sent), len(rest)))
    assert conn.getresponse().status == 204
    conn.close()
    assert stored(live_server, upload_id) == sent + rest
    assert_spliced_only_on_the_fast_path(live_server)


def test_a_stalled_body_is_answered_408_with_the_stored_offset(
    server_factory: Callable[..., LiveServer], make_token: Token
) -> None:
    server = server_factory(UPLOAD_BODY_TIMEOUT="1")
    token = make_token()
    sent = os.urandom(MIB)
    upload_id = new_upload(server, token, 4 * MIB)
    sock = raw_patch(server, token, upload_id, 4 * MIB)
    sock.sendall(sent)  # then nothing, with the connection open
    sock.settimeout(30)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, "the server closed without answering"
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert f"upload-offset: {len(sent)}".encode() in answer.lower()
    assert stored(server, upload_id) == sent
    assert_spliced_only_on_the_fast_path(server)
