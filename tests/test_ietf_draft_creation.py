"""The IETF resumable-upload draft on the tus endpoints: upload creation and cancellation.

Through the ASGI app: a POST with all, part or none of the content, and the
DELETE that cancels an upload.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest
from ietf_draft_helpers import (
    append,
    content_of,
    draft,
    offset_of,
    processed,
    status_of,
    upload_id_of,
)

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio


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


async def test_creation_needs_upload_complete(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    r = await client.post("/files/", content=b"x", headers=draft(make_token()))
    assert r.status_code == 400, r.text


# -- cancellation -----------------------------------------------------------------


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
