"""The IETF resumable-upload draft on the tus endpoints: offset retrieval and upload append.

What a client does to resume: ask the offset (HEAD), append from it (PATCH).
Through the ASGI app, except the interrupted append, which needs a real socket
closed halfway through a body (real uvicorn, `live_server`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
import httpx
import pytest
from conftest import LiveServer
from ietf_draft_helpers import (
    PARTIAL,
    append,
    content_of,
    draft,
    offset_of,
    status_of,
    upload_id_of,
)
from tus_helpers import age_upload

from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio


# -- offset retrieval -------------------------------------------------------------


async def test_offset_retrieval(client: httpx.AsyncClient, make_token: Callable[..., str]) -> None:
    token = make_token()
    r = await client.post(
        "/files/",
        content=b"x" * 300,
        headers=draft(token, **{"Upload-Complete": "?0", "Upload-Length": "1000"}),
    )
    upload_id = upload_id_of(r)
    r = await offset_of(client, token, upload_id)
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "300"
    assert r.headers["upload-complete"] == "?0"
    assert r.headers["upload-length"] == "1000"
    assert r.headers["cache-control"] == "no-store"
    assert "max-age=" in r.headers["upload-limit"]
    # The same upload seen through tus 1.0.0: one store, one state.
    r = await client.head(
        f"/files/{upload_id}",
        headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"},
    )
    assert (r.headers["upload-offset"], r.headers["upload-length"]) == ("300", "1000")


async def test_offset_retrieval_of_a_completed_upload(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"done", headers=draft(token, **{"Upload-Complete": "?1"})
    )
    r = await offset_of(client, token, upload_id_of(r))
    assert (r.headers["upload-complete"], r.headers["upload-offset"]) == ("?1", "4")
    assert r.headers["upload-length"] == "4"


async def test_offset_retrieval_needs_the_owners_token(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    r = await client.post("/files/", headers=draft(make_token(), **{"Upload-Complete": "?0"}))
    upload_id = upload_id_of(r)
    assert (await client.head(f"/files/{upload_id}", headers=draft(None))).status_code == 401
    assert (await offset_of(client, make_token("someone-else"), upload_id)).status_code == 404
    r = await client.post("/files/", headers=draft(None, **{"Upload-Complete": "?0"}))
    assert r.status_code == 401


async def test_expired_upload_is_410(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"ab", headers=draft(token, **{"Upload-Complete": "?0"})
    )
    upload_id = upload_id_of(r)
    age_upload(settings, upload_id, settings.expiry + 5)
    assert (await offset_of(client, token, upload_id)).status_code == 410
    assert (await append(client, token, upload_id, 2, b"cd", complete=True)).status_code == 410


# -- upload append ----------------------------------------------------------------


async def test_offset_mismatch_is_409_with_the_right_offset(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"a" * 100, headers=draft(token, **{"Upload-Complete": "?0"})
    )
    upload_id = upload_id_of(r)
    r = await append(client, token, upload_id, 50, b"b" * 10, complete=False)
    assert r.status_code == 409, r.text
    assert r.headers["upload-offset"] == "100"
    assert (await offset_of(client, token, upload_id)).headers["upload-offset"] == "100"


async def test_append_needs_partial_upload_content_type(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post("/files/", headers=draft(token, **{"Upload-Complete": "?0"}))
    upload_id = upload_id_of(r)
    r = await append(
        client, token, upload_id, 0, b"x", False, 8, {"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 415, r.text
    # Before interop version 6 the draft had no media type for appends.
    r = await append(
        client, token, upload_id, 0, b"x", False, 5, {"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 204, r.text


@pytest.mark.parametrize("headers", [{"Upload-Offset": "0"}, {"Upload-Complete": "?0"}])
async def test_append_needs_offset_and_completeness(
    client: httpx.AsyncClient, make_token: Callable[..., str], headers: dict[str, str]
) -> None:
    token = make_token()
    r = await client.post("/files/", headers=draft(token, **{"Upload-Complete": "?0"}))
    r = await client.patch(
        f"/files/{upload_id_of(r)}",
        content=b"x",
        headers=draft(token, **{"Content-Type": PARTIAL, **headers}),
    )
    assert r.status_code == 400, r.text


async def test_appending_to_a_completed_upload_is_refused(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"all", headers=draft(token, **{"Upload-Complete": "?1"})
    )
    upload_id = upload_id_of(r)
    r = await append(client, token, upload_id, 3, b"more", complete=True)
    assert r.status_code == 400, r.text
    # Repeating the completing request without content is harmless.
    r = await append(client, token, upload_id, 3, b"", complete=True)
    assert (r.status_code, r.headers["upload-complete"]) == (204, "?1")
    assert await content_of(client, upload_id) == b"all"


async def test_inconsistent_length_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/",
        content=b"12345",
        headers=draft(token, **{"Upload-Complete": "?1", "Upload-Length": "10"}),
    )
    assert r.status_code == 400, r.text
    r = await client.post(
        "/files/",
        content=b"12",
        headers=draft(token, **{"Upload-Complete": "?0", "Upload-Length": "4"}),
    )
    upload_id = upload_id_of(r)
    r = await append(client, token, upload_id, 2, b"345", complete=True)
    assert r.status_code == 400, r.text
    assert (await offset_of(client, token, upload_id)).headers["upload-offset"] == "2"


async def test_too_large_is_413_with_upload_limit(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token(max_bytes=1000)
    r = await client.post(
        "/files/", headers=draft(token, **{"Upload-Complete": "?0", "Upload-Length": "1001"})
    )
    assert r.status_code == 413, r.text
    assert r.headers["upload-limit"] == "max-size=1000"


async def test_an_append_cut_off_by_a_shutdown_keeps_and_records_its_bytes(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    """As for a tus PATCH: past the grace period the server cancels the request; what
    arrived stays stored, the status record says so, and the upload is not locked."""
    token = make_token()
    length = 4 * 1024 * 1024
    r = await client.post(
        "/files/", headers=draft(token, **{"Upload-Complete": "?0", "Upload-Length": str(length)})
    )
    upload_id = upload_id_of(r)
    sent = os.urandom(1024 * 1024)
    all_sent = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield sent
        all_sent.set()
        await anyio.sleep_forever()  # the client stalls
        yield b""  # pragma: no cover

    headers = draft(
        token, **{"Upload-Offset": "0", "Upload-Complete": "?0", "Content-Type": PARTIAL}
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.patch(f"/files/{upload_id}", content=body(), headers=headers))
        await all_sent.wait()
        tg.cancel_scope.cancel()  # what a shutdown does to a request past its grace
    assert (await offset_of(client, token, upload_id)).headers["upload-offset"] == str(len(sent))
    assert (await status_of(client, upload_id))["offset"] == len(sent)
    rest = os.urandom(length - len(sent))
    r = await append(client, token, upload_id, len(sent), rest, complete=True)
    assert r.status_code == 204, r.text
    assert await content_of(client, upload_id) == sent + rest


# -- resuming an interrupted append over a real connection ---------------------


def send_and_break(
    server: LiveServer, path: str, headers: dict[str, str], sent: bytes, total: int
) -> None:
    """A PATCH whose connection dies after `sent` of `total` announced bytes."""
    lines = [f"PATCH {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {total}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
        s.shutdown(socket.SHUT_WR)


async def test_resume_after_an_interrupted_append(
    live_server: LiveServer, make_token: Callable[..., str]
) -> None:
    token = make_token()
    data = os.urandom(3 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        r = await client.post(
            "/files/", content=data[:1000], headers=draft(token, **{"Upload-Complete": "?0"})
        )
        assert r.status_code == 201, r.text
        upload_id = upload_id_of(r)
        half = len(data) // 2
        headers = draft(
            token, **{"Upload-Offset": "1000", "Upload-Complete": "?1", "Content-Type": PARTIAL}
        )
        await anyio.to_thread.run_sync(
            send_and_break,
            live_server,
            f"/files/{upload_id}",
            headers,
            data[1000:half],
            len(data) - 1000,
        )
        # The server keeps what arrived; poll until the offset says so.
        for _ in range(200):
            r = await offset_of(client, token, upload_id)
            if r.status_code == 204 and r.headers["upload-offset"] == str(half):
                break
            await anyio.sleep(0.05)
        assert r.headers["upload-offset"] == str(half)
        assert r.headers["upload-complete"] == "?0"

        # The broken request may still hold the upload (recording its offset): a
        # client retries a 423 until it has let go.
        for _ in range(200):
            r = await append(client, token, upload_id, half, data[half:], complete=True)
            if r.status_code != 423:
                break
            await anyio.sleep(0.05)
        assert r.status_code == 204, r.text
        assert r.headers["upload-complete"] == "?1"
        got = await client.get(f"/files/{upload_id}", headers={"Authorization": f"Bearer {token}"})
        assert got.content == data
