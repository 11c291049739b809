"""tus 1.0.0 through the ASGI app: tables of request -> expected status and headers.

Real stores (LocalStore on a temp dir), real Redis locks and status cache; the
job queue records what would reach the workers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from conftest import API_KEY
from protocol_helpers import (
    EXTENSIONS,
    OCTETS,
    Token,
    app_client,
    assert_error,
    b64,
    create,
    patch,
    stored_ids,
    tus,
)

from upload_service.core.jobs import MemoryJobQueue
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
