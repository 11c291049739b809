"""tus 1.0.0 through the ASGI app: tables of request -> expected status and headers.

Real stores (LocalStore on a temp dir), real Redis locks and status cache; the
job queue records what would reach the workers.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import jwt
import pytest
from conftest import API_KEY, TOKEN_SECRET

from upload_service.app import Services, create_app
from upload_service.jobs import MemoryJobQueue
from upload_service.settings import Settings
from upload_service.tus.headers import parse_metadata

pytestmark = pytest.mark.anyio

Token = Callable[..., str]
EXTENSIONS = {
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
}
OCTETS = "application/offset+octet-stream"


def tus(token: str | None, **extra: str) -> dict[str, str]:
    headers = {"Tus-Resumable": "1.0.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def create(
    client: httpx.AsyncClient, token: str, length: int | None = 10, **extra: str
) -> str:
    headers = tus(token, **extra)
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    response = await client.post("/files/", headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


async def patch(
    client: httpx.AsyncClient, token: str, upload_id: str, offset: int, body: bytes, **extra: str
) -> httpx.Response:
    headers = tus(token, Upload_Offset=str(offset), Content_Type=OCTETS, **extra)
    return await client.patch(f"/files/{upload_id}", headers=headers, content=body)


def stored_ids(settings: Settings) -> list[str]:
    if not settings.uploads_dir.exists():
        return []
    return [p.name for p in settings.uploads_dir.iterdir() if not p.name.endswith(".info")]


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    services = Services.from_settings(settings, jobs=MemoryJobQueue())
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c
    await services.redis.aclose()


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


# -- POST (creation) ----------------------------------------------------------------

CREATE_CASES: list[tuple[str, dict[str, str], int, str | None]] = [
    ("length", {"Upload-Length": "10"}, 201, None),
    ("length zero", {"Upload-Length": "0"}, 201, None),
    ("length at the max", {"Upload-Length": str(200 * 1024 * 1024)}, 201, None),
    ("defer", {"Upload-Defer-Length": "1"}, 201, None),
    ("defer not 1", {"Upload-Defer-Length": "0"}, 400, "invalid_length"),
    ("neither", {}, 400, "invalid_length"),
    ("both", {"Upload-Length": "10", "Upload-Defer-Length": "1"}, 400, "bad_request"),
    ("negative", {"Upload-Length": "-1"}, 400, "invalid_length"),
    ("non-numeric", {"Upload-Length": "ten"}, 400, "invalid_length"),
    ("plus sign", {"Upload-Length": "+5"}, 400, "invalid_length"),
    ("float", {"Upload-Length": "5.0"}, 400, "invalid_length"),
    ("underscore", {"Upload-Length": "1_000"}, 400, "invalid_length"),
    ("empty", {"Upload-Length": ""}, 400, "invalid_length"),
    ("superscript digit", {"Upload-Length": "\u00b2"}, 400, "invalid_length"),
    ("oversize", {"Upload-Length": str(200 * 1024 * 1024 + 1)}, 413, "too_large"),
    ("past int64", {"Upload-Length": "9" * 20}, 400, "invalid_length"),
    ("absurdly long number", {"Upload-Length": "9" * 5000}, 400, "invalid_length"),
    ("empty metadata", {"Upload-Length": "10", "Upload-Metadata": ""}, 201, None),
    ("metadata", {"Upload-Length": "1", "Upload-Metadata": f"filename {b64('a.mp4')}"}, 201, None),
    ("metadata not base64", {"Upload-Length": "1", "Upload-Metadata": "filename !!!"}, 400, None),
    ("metadata three parts", {"Upload-Length": "1", "Upload-Metadata": "a b c"}, 400, None),
    ("metadata empty key", {"Upload-Length": "1", "Upload-Metadata": "a YQ==,"}, 400, None),
    ("metadata repeated", {"Upload-Length": "1", "Upload-Metadata": "a YQ==,a YQ=="}, 400, None),
    ("metadata not utf-8", {"Upload-Length": "1", "Upload-Metadata": "a /w=="}, 400, None),
]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [c[1:] for c in CREATE_CASES],
    ids=[c[0] for c in CREATE_CASES],
)
async def test_creation(
    client: httpx.AsyncClient,
    settings: Settings,
    make_token: Token,
    jobs: MemoryJobQueue,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    # latin-1 on the wire, as a browser or proxy would send a non-ASCII value.
    raw = {k.encode(): v.encode("latin-1") for k, v in (tus(make_token()) | headers).items()}
    response = await client.post("/files/", headers=raw)
    if status != 201:
        assert_error(response, status, code or "invalid_metadata")
        assert stored_ids(settings) == []  # refused before a byte or record is stored
        assert list(settings.status_dir.glob("*.json")) == []
        assert jobs.sent == []
        return
    assert response.status_code == 201
    location = response.headers["location"]
    assert location.startswith("http://testserver/files/")
    # Only an unfinished upload expires.
    assert ("upload-expires" in response.headers) == (headers.get("Upload-Length") != "0")
    upload_id = location.rsplit("/", 1)[-1]
    assert stored_ids(settings) == [upload_id]


@pytest.mark.parametrize(
    ("max_bytes", "length", "status"),
    [(100, 100, 201), (100, 101, 413), (0, 1, 413), (10**12, 200 * 1024 * 1024 + 1, 413)],
)
async def test_token_max_bytes_limits_creation(
    client: httpx.AsyncClient,
    settings: Settings,
    make_token: Token,
    max_bytes: int,
    length: int,
    status: int,
) -> None:
    token = make_token(max_bytes=max_bytes)
    response = await client.post("/files/", headers=tus(token, Upload_Length=str(length)))
    assert response.status_code == status
    if status == 413:
        assert_error(response, 413, "too_large")
        assert stored_ids(settings) == []


async def test_creation_keeps_token_claims_for_the_pipeline(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token(sub="u-9", kinds=["audio"], meta={"course_id": 12, "lesson_id": 7})
    upload_id = await create(client, token)
    info = await client.app.state.services.store.get(upload_id)  # type: ignore[attr-defined]
    assert (info.owner, info.kinds, info.meta) == (
        "u-9",
        ["audio"],
        {"course_id": 12, "lesson_id": 7},
    )
    record = client.app.state.services.status.get(upload_id)  # type: ignore[attr-defined]
    assert record["owner"] == "u-9" and record["meta"] == {"course_id": 12, "lesson_id": 7}
    assert record["state"] == "uploading" and record["offset"] == 0


CREATE_WITH_UPLOAD_CASES: list[tuple[str, str, bytes, dict[str, str], int, int | None]] = [
    ("part", "10", b"hello", {}, 201, 5),
    ("all", "10", b"0123456789", {}, 201, 10),
    ("deferred", "", b"abc", {}, 201, 3),
    ("past the end", "4", b"hello", {}, 413, None),
    ("wrong type", "10", b"hello", {"Content-Type": "text/plain"}, 415, None),
]


@pytest.mark.parametrize(
    ("length", "body", "extra", "status", "offset"),
    [c[1:] for c in CREATE_WITH_UPLOAD_CASES],
    ids=[c[0] for c in CREATE_WITH_UPLOAD_CASES],
)
async def test_creation_with_upload(
    client: httpx.AsyncClient,
    settings: Settings,
    make_token: Token,
    jobs: MemoryJobQueue,
    length: str,
    body: bytes,
    extra: dict[str, str],
    status: int,
    offset: int | None,
) -> None:
    token = make_token()
    headers = tus(token, Content_Type=OCTETS)
    headers |= {"Upload-Length": length} if length else {"Upload-Defer-Length": "1"}
    response = await client.post("/files/", headers=headers | extra, content=body)
    if status != 201:
        assert_error(response, status)
        assert stored_ids(settings) == []
        return
    assert response.status_code == 201
    assert response.headers["upload-offset"] == str(offset)
    upload_id = response.headers["location"].rsplit("/", 1)[-1]
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    assert head.headers["upload-offset"] == str(offset)
    finished = length == str(offset)
    assert jobs.sent == ([("process_upload", (upload_id,))] if finished else [])


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


# -- PATCH ------------------------------------------------------------------------------

PATCH_CASES: list[tuple[str, dict[str, str], bytes, int, str | None, int]] = [
    ("ok", {}, b"abcd", 204, None, 4),
    ("empty body", {}, b"", 204, None, 0),
    ("wrong content type", {"Content-Type": "application/octet-stream"}, b"ab", 415, None, 0),
    ("no content type", {"Content-Type": ""}, b"ab", 415, None, 0),
    ("missing offset", {"Upload-Offset": ""}, b"ab", 400, "invalid_offset", 0),
    ("negative offset", {"Upload-Offset": "-1"}, b"ab", 400, "invalid_offset", 0),
    ("non-numeric offset", {"Upload-Offset": "zero"}, b"ab", 400, "invalid_offset", 0),
    ("plus offset", {"Upload-Offset": "+0"}, b"ab", 400, "invalid_offset", 0),
    ("offset ahead", {"Upload-Offset": "3"}, b"ab", 409, "mismatched_offset", 0),
    ("body past the length", {}, b"0123456789X", 413, "too_large", 0),
    ("length changed", {"Upload-Length": "11"}, b"ab", 400, "bad_request", 0),
    ("same length repeated", {"Upload-Length": "10"}, b"ab", 204, None, 2),
]


@pytest.mark.parametrize(
    ("extra", "body", "status", "code", "offset_after"),
    [c[1:] for c in PATCH_CASES],
    ids=[c[0] for c in PATCH_CASES],
)
async def test_patch(
    client: httpx.AsyncClient,
    make_token: Token,
    extra: dict[str, str],
    body: bytes,
    status: int,
    code: str | None,
    offset_after: int,
) -> None:
    token = make_token()
    upload_id = await create(client, token, 10)
    headers = tus(token, Upload_Offset="0", Content_Type=OCTETS)
    for key, value in extra.items():
        if value == "" and key in ("Upload-Offset", "Content-Type"):
            del headers[key]
        else:
            headers[key] = value
    response = await client.patch(f"/files/{upload_id}", headers=headers, content=body)
    if status == 204:
        assert response.status_code == 204
        assert response.headers["upload-offset"] == str(offset_after)
        assert response.headers["tus-resumable"] == "1.0.0"
        assert "upload-expires" in response.headers
    else:
        assert_error(response, status, code)
        if status == 409:
            assert response.headers["upload-offset"] == "0"
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    assert head.headers["upload-offset"] == str(offset_after)


async def test_patch_after_a_patch_must_send_the_new_offset(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token()
    upload_id = await create(client, token, 10)
    assert (await patch(client, token, upload_id, 0, b"abc")).status_code == 204
    stale = await patch(client, token, upload_id, 0, b"abc")
    assert_error(stale, 409, "mismatched_offset")
    assert stale.headers["upload-offset"] == "3"
    done = await patch(client, token, upload_id, 3, b"defghij")
    assert done.headers["upload-offset"] == "10"
    finished = await patch(client, token, upload_id, 10, b"k")
    assert_error(finished, 413, "too_large")


DEFER_CASES: list[tuple[str, list[tuple[str | None, bytes, int]], str | None]] = [
    ("declare with the first chunk", [("10", b"abcd", 204)], "10"),
    ("declare at the end", [(None, b"abcd", 204), ("4", b"", 204)], "4"),
    ("declare then finish", [(None, b"ab", 204), ("5", b"cde", 204)], "5"),
    ("declare below the offset", [(None, b"abcd", 204), ("3", b"", 400)], None),
    ("declare oversize", [(str(200 * 1024 * 1024 + 1), b"", 413)], None),
    ("declare negative", [("-4", b"", 400)], None),
    ("declare too short for the body", [("2", b"abc", 413)], "2"),
]


@pytest.mark.parametrize(
    ("steps", "final_length"), [c[1:] for c in DEFER_CASES], ids=[c[0] for c in DEFER_CASES]
)
async def test_declaring_a_deferred_length_in_patch(
    client: httpx.AsyncClient,
    make_token: Token,
    jobs: MemoryJobQueue,
    steps: list[tuple[str | None, bytes, int]],
    final_length: str | None,
) -> None:
    token = make_token()
    upload_id = await create(client, token, None)
    offset = 0
    for length, body, status in steps:
        extra = {"Upload-Length": length} if length is not None else {}
        response = await patch(client, token, upload_id, offset, body, **extra)
        assert response.status_code == status, response.text
        if status == 204:
            offset = int(response.headers["upload-offset"])
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    if final_length is None:
        assert head.headers["upload-defer-length"] == "1"
    else:
        assert head.headers["upload-length"] == final_length
    finished = head.headers.get("upload-length") == head.headers["upload-offset"]
    assert jobs.sent == ([("process_upload", (upload_id,))] if finished else [])


async def test_token_max_bytes_limits_a_deferred_upload(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token(max_bytes=5)
    upload_id = await create(client, token, None)
    assert_error(await patch(client, token, upload_id, 0, b"abcdef"), 413, "too_large")
    assert (await patch(client, token, upload_id, 0, b"abcde")).status_code == 204
    assert_error(await patch(client, token, upload_id, 5, b"f"), 413, "too_large")


async def test_a_stalled_body_is_cut_off_and_its_bytes_kept(
    settings: Settings, make_token: Token
) -> None:
    token = make_token()

    async def stalls_after_four_bytes() -> AsyncIterator[bytes]:
        yield b"abcd"
        await anyio.Event().wait()  # a client that vanished without closing
        yield b"never"

    async with app_client(settings.with_changes(body_timeout=0.3)) as c:
        upload_id = await create(c, token, 10)
        headers = tus(token, Upload_Offset="0", Content_Type=OCTETS)
        response = await c.patch(
            f"/files/{upload_id}", headers=headers, content=stalls_after_four_bytes()
        )
        assert_error(response, 408, "request_timeout")
        assert response.headers["upload-offset"] == "4"
        head = await c.head(f"/files/{upload_id}", headers=tus(token))
        assert head.headers["upload-offset"] == "4"
        record = c.app.state.services.status.get(upload_id)  # type: ignore[attr-defined]
        assert record["offset"] == 4
        # The lock was released: the client resumes at once.
        assert (await patch(c, token, upload_id, 4, b"efghij")).status_code == 204


# -- the pipeline and the status record ---------------------------------------------------


async def test_job_is_enqueued_once_when_the_last_byte_arrives(
    client: httpx.AsyncClient, make_token: Token, jobs: MemoryJobQueue
) -> None:
    token = make_token()
    status = client.app.state.services.status  # type: ignore[attr-defined]
    upload_id = await create(client, token, 10)
    assert (await patch(client, token, upload_id, 0, b"abcd")).status_code == 204
    assert jobs.sent == []
    record = status.get(upload_id)
    assert (record["state"], record["offset"], record["length"]) == ("uploading", 4, 10)
    assert (await patch(client, token, upload_id, 4, b"")).status_code == 204
    assert jobs.sent == []
    assert (await patch(client, token, upload_id, 4, b"efghij")).status_code == 204
    assert jobs.sent == [("process_upload", (upload_id,))]
    record = status.get(upload_id)
    assert (record["state"], record["offset"], record["length"]) == ("uploaded", 10, 10)
    # Replaying the last (empty) PATCH or racing a HEAD must not start the pipeline again.
    assert (await patch(client, token, upload_id, 10, b"")).status_code == 204
    assert (await client.head(f"/files/{upload_id}", headers=tus(token))).status_code == 200
    assert jobs.sent == [("process_upload", (upload_id,))]


async def test_empty_upload_is_finished_at_creation(
    client: httpx.AsyncClient, make_token: Token, jobs: MemoryJobQueue
) -> None:
    token = make_token()
    upload_id = await create(client, token, 0)
    assert jobs.sent == [("process_upload", (upload_id,))]
    record = client.app.state.services.status.get(upload_id)  # type: ignore[attr-defined]
    assert record["state"] == "uploaded"
    assert (await patch(client, token, upload_id, 0, b"")).status_code == 204
    assert jobs.sent == [("process_upload", (upload_id,))]


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
        assert response.headers["content-disposition"] == 'attachment; filename="ab.mp4"'
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


# -- tokens ---------------------------------------------------------------------------------


def bad_token(kind: str, make_token: Token) -> str | None:
    good = make_token()
    if kind == "missing":
        return None
    if kind == "malformed":
        return "not-a-jwt"
    if kind == "tampered signature":
        head, payload, signature = good.split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        return f"{head}.{payload}.{flipped}"
    if kind == "tampered payload":
        head, _, signature = good.split(".")
        forged = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, "x" * 32)
        return f"{head}.{forged.split('.')[1]}.{signature}"
    if kind == "wrong secret":
        return make_token(secret="another-secret-0123456789abcdef0123456789")
    if kind == "expired":
        return make_token(ttl=-10)
    if kind == "missing sub":
        return jwt.encode({"exp": int(time.time()) + 60}, TOKEN_SECRET, algorithm="HS256")
    if kind == "empty sub":
        return jwt.encode({"sub": "", "exp": int(time.time()) + 60}, TOKEN_SECRET)
    if kind == "missing exp":
        return jwt.encode({"sub": "user-1"}, TOKEN_SECRET, algorithm="HS256")
    if kind == "alg none":
        return jwt.encode({"sub": "user-1", "exp": int(time.time()) + 60}, None, algorithm="none")
    if kind == "bad max_bytes":
        return make_token(max_bytes=-1)
    if kind == "bad kinds":
        return jwt.encode(
            {"sub": "user-1", "exp": int(time.time()) + 60, "kinds": ["image"]}, TOKEN_SECRET
        )
    raise AssertionError(kind)


BAD_TOKENS = [
    "missing",
    "malformed",
    "tampered signature",
    "tampered payload",
    "wrong secret",
    "expired",
    "missing sub",
    "empty sub",
    "missing exp",
    "alg none",
    "bad max_bytes",
    "bad kinds",
]


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE", "GET"])
async def test_bad_tokens_are_401(
    client: httpx.AsyncClient, settings: Settings, make_token: Token, method: str, kind: str
) -> None:
    owner = make_token()
    upload_id = await create(client, owner, 3)
    await patch(client, owner, upload_id, 0, b"abc")  # finished, so GET would serve it
    token = bad_token(kind, make_token)
    headers = tus(token, Upload_Length="3", Upload_Offset="3", Content_Type=OCTETS)
    path = "/files/" if method == "POST" else f"/files/{upload_id}"
    response = await client.request(method, path, headers=headers)
    assert response.status_code == 401
    if method != "HEAD":
        assert_error(response, 401, "unauthorized")
    assert stored_ids(settings) == [upload_id]


@pytest.mark.parametrize("scheme", ["Basic", "Token", ""])
async def test_non_bearer_authorization_is_401(
    client: httpx.AsyncClient, make_token: Token, scheme: str
) -> None:
    headers = tus(None, Upload_Length="3", Authorization=f"{scheme} {make_token()}".strip())
    assert_error(await client.post("/files/", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
async def test_foreign_sub_gets_404(
    client: httpx.AsyncClient, make_token: Token, method: str
) -> None:
    owner = make_token(sub="owner")
    upload_id = await create(client, owner, 3)
    await patch(client, owner, upload_id, 0, b"ab")
    if method == "GET":
        await patch(client, owner, upload_id, 2, b"c")
    stranger = make_token(sub="stranger")
    headers = tus(stranger, Upload_Offset="2" if method != "GET" else "3", Content_Type=OCTETS)
    response = await client.request(method, f"/files/{upload_id}", headers=headers, content=b"c")
    assert response.status_code == 404
    if method != "HEAD":
        assert_error(response, 404, "not_found")
    # The owner's upload is untouched.
    head = await client.head(f"/files/{upload_id}", headers=tus(owner))
    assert head.status_code == 200
    assert head.headers["upload-offset"] == ("3" if method == "GET" else "2")


# -- CORS, proxies, method override --------------------------------------------------------

TUS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Concat",
    "X-HTTP-Method-Override",
    "X-Request-ID",
]
TUS_RESPONSE_HEADERS = [
    "Location",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
]


@pytest.mark.parametrize("method", ["POST", "PATCH", "HEAD", "DELETE"])
async def test_cors_preflight_allows_the_tus_headers(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.options(
        "/files/some-id" if method != "POST" else "/files/",
        headers={
            "Origin": "https://course.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ",".join(h.lower() for h in TUS_REQUEST_HEADERS),
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://course.example")
    assert method in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {h.lower() for h in TUS_REQUEST_HEADERS} <= allowed


async def test_cors_exposes_the_tus_headers(client: httpx.AsyncClient, make_token: Token) -> None:
    response = await client.post(
        "/files/",
        headers=tus(make_token(), Upload_Length="3", Origin="https://course.example"),
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] in ("*", "https://course.example")
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {h.lower() for h in TUS_RESPONSE_HEADERS} <= exposed
    # Errors carry CORS headers too, or a browser could not read them.
    error = await client.post("/files/", headers=tus(None, Origin="https://course.example"))
    assert error.status_code == 401
    assert "access-control-allow-origin" in error.headers


@pytest.mark.parametrize(
    ("origin", "allowed"), [("https://course.example", True), ("https://evil.example", False)]
)
async def test_cors_origins_can_be_restricted(
    settings: Settings, origin: str, allowed: bool
) -> None:
    restricted = settings.with_changes(cors_origins=("https://course.example",))
    async with app_client(restricted) as c:
        response = await c.options(
            "/files/",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "tus-resumable,upload-length",
            },
        )
    assert (response.status_code == 200) is allowed
    assert (response.headers.get("access-control-allow-origin") == origin) is allowed


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.com"}


@pytest.mark.parametrize(
    ("behind_proxy", "extra", "expected"),
    [
        (False, FORWARDED, "http://testserver/files/"),
        (False, {}, "http://testserver/files/"),
        (True, FORWARDED, "https://uploads.example.com/files/"),
        (True, {"X-Forwarded-Proto": "https, http"}, "https://testserver/files/"),
        (True, {}, "http://testserver/files/"),
    ],
)
async def test_forwarded_headers_only_behind_a_proxy(
    settings: Settings, make_token: Token, behind_proxy: bool, extra: dict[str, str], expected: str
) -> None:
    async with app_client(settings.with_changes(behind_proxy=behind_proxy)) as c:
        response = await c.post("/files/", headers=tus(make_token(), Upload_Length="1") | extra)
    assert response.status_code == 201
    location = response.headers["location"]
    assert location.startswith(expected)
    assert len(location) > len(expected)


async def test_method_override_tunnels_patch_and_delete(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token()
    upload_id = await create(client, token, 6)
    path = f"/files/{upload_id}"
    headers = tus(token, Upload_Offset="0", Content_Type=OCTETS, X_HTTP_Method_Override="PATCH")
    response = await client.post(path, headers=headers, content=b"abc")
    assert response.status_code == 204 and response.headers["upload-offset"] == "3"
    head = await client.post(path, headers=tus(token, X_HTTP_Method_Override="HEAD"))
    assert head.headers["upload-offset"] == "3"
    gone = await client.post(path, headers=tus(token, X_HTTP_Method_Override="delete"))
    assert gone.status_code == 204
    assert (await client.head(path, headers=tus(token))).status_code == 404


# -- error bodies -----------------------------------------------------------------------------


async def test_every_error_has_a_code_and_message(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token()
    upload_id = await create(client, token, 2)
    requests: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/files/", tus(token), None),
        ("POST", "/files/", tus(token, Upload_Length="x"), None),
        ("PATCH", f"/files/{upload_id}", tus(token, Upload_Offset="0"), b"a"),
        ("PATCH", f"/files/{upload_id}", tus(token, Upload_Offset="1", Content_Type=OCTETS), b"a"),
        ("DELETE", "/files/nope", tus(token), None),
        ("GET", "/files/nope", {"Authorization": f"Bearer {token}"}, None),
        ("GET", "/v1/uploads/nope", {"Authorization": f"Bearer {API_KEY}"}, None),
    ]
    codes = set()
    for method, path, headers, body in requests:
        response = await client.request(method, path, headers=headers, content=body)
        assert response.status_code >= 400
        assert response.headers["content-type"].startswith("application/json")
        assert_error(response, response.status_code)
        codes.add(response.json()["error"]["code"])
    assert {"invalid_length", "unsupported_content_type", "mismatched_offset", "not_found"} <= codes


async def test_checksum_sha256_is_verified(client: httpx.AsyncClient, make_token: Token) -> None:
    token = make_token()
    upload_id = await create(client, token, 4)
    good = base64.b64encode(hashlib.sha256(b"abcd").digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"abce").digest()).decode()
    response = await patch(client, token, upload_id, 0, b"abcd", Upload_Checksum=f"sha256 {bad}")
    assert_error(response, 460, "checksum_mismatch")
    head = await client.head(f"/files/{upload_id}", headers=tus(token))
    assert head.headers["upload-offset"] == "0"
    response = await patch(client, token, upload_id, 0, b"abcd", Upload_Checksum=f"sha256 {good}")
    assert response.status_code == 204 and response.headers["upload-offset"] == "4"
