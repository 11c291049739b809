"""tus 1.0.0 PATCH through the ASGI app: offsets, deferred lengths, stalls, checksums.

Tables of request -> expected status and headers, and the one job sent when the
last byte arrives. Real stores (LocalStore on a temp dir), real Redis locks and
status cache; the job queue records what would reach the workers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from protocol_helpers import (
    OCTETS,
    Token,
    app_client,
    assert_error,
    create,
    patch,
    tus,
)

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio

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


# -- checksum -----------------------------------------------------------------------------


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
