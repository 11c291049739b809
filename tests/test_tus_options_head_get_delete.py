"""tus 1.0.0 through the ASGI app: OPTIONS, the Tus-Resumable check, HEAD, GET and DELETE.

Everything a client asks of an upload besides creating it and appending to it.
Real stores (LocalStore on a temp dir), real Redis locks and status cache; the
job queue records what would reach the workers.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import API_KEY
from protocol_helpers import (
    EXTENSIONS,
    OCTETS,
    Token,
    assert_error,
    b64,
    create,
    patch,
    stored_ids,
    tus,
)

from upload_service.core.settings import Settings
from upload_service.http.tus.headers import parse_metadata

pytestmark = pytest.mark.anyio

# -- OPTIONS and Tus-Resumable ----------------------------------------------------


@pytest.mark.parametrize("path", ["/files/", "/files/some-id"])
async def test_options_needs_no_token_and_advertises_everything(
    client: httpx.AsyncClient, settings: Settings, path: str
) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    h = response.headers
    assert h["tus-resumable"] == "1.0.0"
    assert h["tus-version"] == "1.0.0"
    assert set(h["tus-extension"].split(",")) == EXTENSIONS
    assert h["tus-max-size"] == str(settings.max_size)
    assert set(h["tus-checksum-algorithm"].split(",")) == {"md5", "sha1", "sha256"}


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", "2.0.0", ""])
@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
async def test_missing_or_wrong_tus_resumable_is_412(
    client: httpx.AsyncClient, make_token: Token, method: str, version: str | None
) -> None:
    token = make_token()
    upload_id = await create(client, token)
    headers = {"Authorization": f"Bearer {token}", "Upload-Length": "10"}
    headers |= {"Upload-Offset": "0", "Content-Type": OCTETS}
    if version is not None:
        headers["Tus-Resumable"] = version
    if method == "HEAD" and version is None:
        # A HEAD without Tus-Resumable is a plain HEAD of the file (not tus);
        # an unfinished upload has no file yet.
        response = await client.head(f"/files/{upload_id}", headers=headers)
        assert response.status_code == 404
        return
    path = "/files/" if method == "POST" else f"/files/{upload_id}"
    body = b"abc" if method == "PATCH" else None
    response = await client.request(method, path, headers=headers, content=body)
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0"
    if method != "HEAD":
        assert_error(response, 412, "unsupported_version")
    # Nothing happened to the upload.
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    assert head.status_code == 200 and head.headers["upload-offset"] == "0"


# -- HEAD -------------------------------------------------------------------------------


async def test_head_reports_offset_length_and_metadata(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token()
    metadata = f"filename {b64('Lektion 1 – Ü.mp4')},filetype {b64('video/mp4')},flag"
    upload_id = await create(client, token, 10, Upload_Metadata=metadata)
    assert (await patch(client, token, upload_id, 0, b"abcd")).status_code == 204
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    assert head.status_code == 200
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == "1.0.0"
    assert head.headers["upload-offset"] == "4"
    assert head.headers["upload-length"] == "10"
    assert "upload-defer-length" not in head.headers
    assert "upload-expires" in head.headers
    assert parse_metadata(head.headers["upload-metadata"]) == {
        "filename": "Lektion 1 – Ü.mp4",
        "filetype": "video/mp4",
        "flag": None,
    }


async def test_head_of_deferred_upload(client: httpx.AsyncClient, make_token: Token) -> None:
    token = make_token()
    upload_id = await create(client, token, None)
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    assert head.status_code == 200
    assert head.headers["upload-defer-length"] == "1"
    assert "upload-length" not in head.headers
    assert "upload-metadata" not in head.headers
    assert head.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("upload_id", ["does-not-exist", "..", "a" * 300, "x%2F..%2Fy"])
async def test_head_of_unknown_upload_is_404(
    client: httpx.AsyncClient, make_token: Token, upload_id: str
) -> None:
    head = await client.head(f"/files/{upload_id}", headers=tus(make_token()))
    assert head.status_code == 404


# -- DELETE -------------------------------------------------------------------------------


async def test_delete_then_head_is_404(
    client: httpx.AsyncClient, settings: Settings, make_token: Token
) -> None:
    token = make_token()
    upload_id = await create(client, token, 10)
    await patch(client, token, upload_id, 0, b"abc")
    response = await client.delete(f"/files/{upload_id}", headers=tus(token))
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert stored_ids(settings) == []
    assert (await client.head(f"/files/{upload_id}", headers=tus(token))).status_code == 404
    assert_error(await patch(client, token, upload_id, 3, b"d"), 404, "not_found")
    assert_error(await client.delete(f"/files/{upload_id}", headers=tus(token)), 404)
    record = client.app.state.services.status.get(upload_id)  # type: ignore[attr-defined]
    assert record["state"] == "terminated"


# -- GET /files/{id} -----------------------------------------------------------------------

RANGE_CASES: list[tuple[str | None, int, bytes | None, str | None]] = [
    (None, 200, b"0123456789", None),
    ("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
    ("bytes=4-", 206, b"456789", "bytes 4-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
    ("bytes=10-", 416, None, "bytes */10"),
    ("bytes=5-2", 416, None, "bytes */10"),
    ("bytes=-0", 416, None, "bytes */10"),
    ("bytes=a-b", 416, None, "bytes */10"),
    ("items=0-1", 416, None, "bytes */10"),
]


@pytest.mark.parametrize(("range_header", "status", "body", "content_range"), RANGE_CASES)
async def test_download_with_range(
    client: httpx.AsyncClient,
    make_token: Token,
    range_header: str | None,
    status: int,
    body: bytes | None,
    content_range: str | None,
) -> None:
    token = make_token()
    quoted = b64('a"b.mp4')
    upload_id = await create(client, token, 10, Upload_Metadata=f"filename {quoted}")
    await patch(client, token, upload_id, 0, b"0123456789")
    headers = {"Authorization": f"Bearer {token}"}
    if range_header:
        headers["Range"] = range_header
    response = await client.get(f"/files/{upload_id}", headers=headers)
    assert response.status_code == status
    if body is not None:
        assert response.content == body
        assert response.headers["content-length"] == str(len(body))
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["content-disposition"] == (
            "attachment; filename=\"a_b.mp4\"; filename*=UTF-8''a%22b.mp4"
        )
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers.get("content-range") == content_range


async def test_download_access(client: httpx.AsyncClient, make_token: Token) -> None:
    token = make_token()
    upload_id = await create(client, token, 4)
    path = f"/files/{upload_id}"
    bearer = {"Authorization": f"Bearer {token}"}
    assert_error(await client.get(path, headers=bearer), 404, "not_found")  # unfinished
    await patch(client, token, upload_id, 0, b"data")
    assert (await client.get(path, headers=bearer)).content == b"data"
    by_key = await client.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
    assert by_key.status_code == 200 and by_key.content == b"data"
    plain_head = await client.head(path, headers=bearer)
    assert plain_head.status_code == 200 and plain_head.headers["content-length"] == "4"
    assert_error(await client.get(path), 401, "unauthorized")
    foreign = {"Authorization": f"Bearer {make_token(sub='someone-else')}"}
    assert_error(await client.get(path, headers=foreign), 404, "not_found")
    # Without credentials, a missing upload and an existing one look the same.
    assert_error(await client.get("/files/nope"), 401, "unauthorized")
