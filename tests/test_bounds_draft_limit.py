"""The draft's `Upload-Complete: ?1` with a chunked body past the token's max_bytes is
refused with 413 too_large, as tus refuses a body past its limit: never cut short
and taken as complete. On a live server, on both body paths."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import API_KEY, LiveServer

pytestmark = pytest.mark.one_path


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_draft_complete_chunked_body_past_max_bytes_is_413_not_truncated(
    server_factory: Callable[..., LiveServer], make_token: Callable[..., str], fast_path: str
) -> None:
    server = server_factory(UPLOAD_FAST_PATH=fast_path)
    token = make_token("draft-user", max_bytes=10_000)
    draft = {
        "Authorization": f"Bearer {token}",
        "Upload-Draft-Interop-Version": "6",
        "Upload-Complete": "?1",
    }
    # httpx sends a generator as Transfer-Encoding: chunked (no Content-Length).
    r = httpx.post(f"{server.url}/files/", headers=draft, content=chunks(os.urandom(50_000)))
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large"
    assert "max-size=10000" in r.headers["upload-limit"]
    assert "location" not in r.headers
    # Nothing of it stays as an upload: no complete, truncated file anywhere.
    uploads = server.settings.uploads_dir
    assert not [p for p in uploads.iterdir()] if uploads.exists() else True
    # tus, with a deferred length and the same chunked body, is refused the same way.
    tus = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    r = httpx.post(
        f"{server.url}/files/",
        headers={
            **tus,
            "Upload-Defer-Length": "1",
            "Content-Type": "application/offset+octet-stream",
        },
        content=chunks(os.urandom(50_000)),
    )
    assert r.status_code == 413, r.text
    # A body that fits exactly is still taken whole, and completes the upload.
    exact = os.urandom(10_000)
    r = httpx.post(f"{server.url}/files/", headers=draft, content=chunks(exact))
    assert r.status_code == 201, r.text
    assert r.headers["upload-complete"] == "?1"
    upload_id = r.headers["location"].rsplit("/", 1)[-1]
    got = httpx.get(
        f"{server.url}/files/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert got.content == exact


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_an_append_past_the_limit_keeps_the_upload_unfinished(
    server_factory: Callable[..., LiveServer], make_token: Callable[..., str], fast_path: str
) -> None:
    server = server_factory(UPLOAD_FAST_PATH=fast_path)
    token = make_token("draft-user", max_bytes=10_000)
    base = {"Authorization": f"Bearer {token}", "Upload-Draft-Interop-Version": "6"}
    r = httpx.post(f"{server.url}/files/", headers={**base, "Upload-Complete": "?0"}, content=b"ab")
    assert r.status_code == 201, r.text
    url = f"{server.url}/files/{r.headers['location'].rsplit('/', 1)[-1]}"
    r = httpx.patch(
        url,
        headers={
            **base,
            "Upload-Complete": "?1",
            "Upload-Offset": "2",
            "Content-Type": "application/partial-upload",
        },
        content=chunks(os.urandom(30_000)),
    )
    assert r.status_code == 413, r.text
    head = httpx.head(url, headers=base)
    assert head.headers["upload-complete"] == "?0"  # never taken as complete
    assert int(head.headers["upload-offset"]) <= 10_000
