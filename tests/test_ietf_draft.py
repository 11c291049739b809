"""The IETF resumable-upload draft on the tus endpoints: every request kind.

Through the ASGI app, except the interrupted append, which needs a real socket
closed halfway through a body (real uvicorn, `live_server`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
import httpx
import pytest
from conftest import API_KEY, LiveServer
from tus_helpers import age_upload

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio

PARTIAL = "application/partial-upload"


def draft(token: str | None, *version: int, **extra: str) -> dict[str, str]:
    """Draft request headers; `version` (default 8) is positional so that headers cannot clash."""
    headers = {"Upload-Draft-Interop-Version": str(version[0] if version else 8), **extra}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def upload_id_of(response: httpx.Response) -> str:
    return response.headers["location"].rsplit("/", 1)[-1]


async def append(
    client: httpx.AsyncClient,
    token: str,
    upload_id: str,
    offset: int,
    data: bytes,
    complete: bool,
    version: int = 8,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    headers = draft(
        token,
        version,
        **{
            "Upload-Offset": str(offset),
            "Upload-Complete": "?1" if complete else "?0",
            "Content-Type": PARTIAL,
            **(extra or {}),
        },
    )
    return await client.patch(f"/files/{upload_id}", content=data, headers=headers)


async def offset_of(client: httpx.AsyncClient, token: str, upload_id: str) -> httpx.Response:
    return await client.head(f"/files/{upload_id}", headers=draft(token))


async def content_of(client: httpx.AsyncClient, upload_id: str) -> bytes:
    r = await client.get(f"/files/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return r.content


async def status_of(client: httpx.AsyncClient, upload_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()


def processed(jobs: MemoryJobQueue) -> list[str]:
    return [args[0] for actor, args in jobs.sent if actor == "process_upload"]


# -- upload creation --------------------------------------------------------------


async def test_create_complete_upload_in_one_request(
    client: httpx.AsyncClient, make_token: Callable[..., str], jobs: MemoryJobQueue
) -> None:
    token = make_token()
    data = os.urandom(50_000)
    r = await client.post(
        "/files/",
        content=data,
        headers=draft(
            token,
            **{
                "Upload-Complete": "?1",
                "Content-Type": "video/mp4",
                "Content-Disposition": 'inline; filename="lecture 1.mp4"',
            },
        ),
    )
    assert r.status_code == 201, r.text
    assert r.headers["upload-complete"] == "?1"
    assert r.headers["upload-offset"] == "50000"
    assert r.headers["upload-draft-interop-version"] == "8"
    upload_id = upload_id_of(r)
    assert await content_of(client, upload_id) == data
    assert processed(jobs) == [upload_id]
    status = await status_of(client, upload_id)
    assert status["state"] == "uploaded"
    assert status["length"] == 50_000
    assert status["metadata"] == {"filetype": "video/mp4", "filename": "lecture 1.mp4"}


async def test_create_incomplete_then_append_then_complete(
    client: httpx.AsyncClient, make_token: Callable[..., str], jobs: MemoryJobQueue
) -> None:
    token = make_token()
    parts = [os.urandom(10_000), os.urandom(20_000), os.urandom(5_000)]
    r = await client.post(
        "/files/", content=parts[0], headers=draft(token, **{"Upload-Complete": "?0"})
    )
    assert r.status_code == 201, r.text
    assert r.headers["upload-complete"] == "?0"
    assert r.headers["upload-offset"] == "10000"
    limits = dict(item.strip().split("=") for item in r.headers["upload-limit"].split(","))
    assert int(limits["max-size"]) > 0
    assert 0 < int(limits["max-age"]) <= 7 * 24 * 3600
    upload_id = upload_id_of(r)

    r = await append(client, token, upload_id, 10_000, parts[1], complete=False)
    assert r.status_code == 204, r.text
    assert r.headers["upload-complete"] == "?0"
    assert r.headers["upload-offset"] == "30000"
    assert processed(jobs) == []
    assert (await status_of(client, upload_id))["state"] == "uploading"

    r = await append(client, token, upload_id, 30_000, parts[2], complete=True)
    assert r.status_code == 204, r.text
    assert r.headers["upload-complete"] == "?1"
    assert "upload-limit" not in r.headers
    assert await content_of(client, upload_id) == b"".join(parts)
    assert processed(jobs) == [upload_id]
    status = await status_of(client, upload_id)
    assert (status["state"], status["length"]) == ("uploaded", 35_000)


async def test_create_without_content_learns_the_url_first(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", headers=draft(token, **{"Upload-Complete": "?0", "Upload-Length": "6"})
    )
    assert r.status_code == 201, r.text
    upload_id = upload_id_of(r)
    r = await offset_of(client, token, upload_id)
    assert (r.headers["upload-offset"], r.headers["upload-length"]) == ("0", "6")
    r = await append(client, token, upload_id, 0, b"abcdef", complete=True)
    assert r.status_code == 204, r.text
    assert await content_of(client, upload_id) == b"abcdef"


async def test_empty_complete_upload(
    client: httpx.AsyncClient, make_token: Callable[..., str], jobs: MemoryJobQueue
) -> None:
    r = await client.post("/files/", headers=draft(make_token(), **{"Upload-Complete": "?1"}))
    assert r.status_code == 201, r.text
    assert r.headers["upload-complete"] == "?1"
    assert processed(jobs) == [upload_id_of(r)]


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


# -- cancellation and discovery ---------------------------------------------------


async def test_cancel(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"abc", headers=draft(token, **{"Upload-Complete": "?0"})
    )
    upload_id = upload_id_of(r)
    r = await client.delete(f"/files/{upload_id}", headers=draft(token))
    assert r.status_code == 204, r.text
    assert (await offset_of(client, token, upload_id)).status_code == 404
    assert not (settings.uploads_dir / upload_id).exists()
    assert (await status_of(client, upload_id))["state"] == "terminated"


async def test_options_advertises_partial_upload_and_limits(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    r = await client.options("/files/", headers=draft(None))
    assert r.status_code == 204
    assert r.headers["accept-patch"] == PARTIAL
    assert r.headers["upload-limit"] == f"max-size={settings.max_size}"


@pytest.mark.parametrize("version", ["2", "9", "seven", ""])
async def test_unsupported_interop_version_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str], version: str
) -> None:
    r = await client.post(
        "/files/",
        headers={
            "Authorization": f"Bearer {make_token()}",
            "Upload-Draft-Interop-Version": version,
            "Upload-Complete": "?1",
        },
    )
    assert r.status_code == 400, r.text
    assert "Upload-Draft-Interop-Version" in r.json()["error"]["message"]


async def test_creation_needs_upload_complete(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    r = await client.post("/files/", content=b"x", headers=draft(make_token()))
    assert r.status_code == 400, r.text


# -- older interop versions -------------------------------------------------------


async def test_interop_version_3_uses_upload_incomplete(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"first", headers=draft(token, 3, **{"Upload-Incomplete": "?1"})
    )
    assert r.status_code == 201, r.text
    assert r.headers["upload-incomplete"] == "?1"
    assert "upload-limit" not in r.headers
    upload_id = upload_id_of(r)
    r = await client.patch(
        f"/files/{upload_id}",
        content=b"-last",
        headers=draft(token, 3, **{"Upload-Offset": "5", "Upload-Incomplete": "?0"}),
    )
    assert r.status_code == 204, r.text
    assert r.headers["upload-incomplete"] == "?0"
    assert await content_of(client, upload_id) == b"first-last"


async def test_interop_version_6_names_the_lifetime_expires(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    r = await client.post("/files/", headers=draft(make_token(), 6, **{"Upload-Complete": "?0"}))
    assert "expires=" in r.headers["upload-limit"]
    assert "max-age" not in r.headers["upload-limit"]


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
