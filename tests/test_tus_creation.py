"""tus 1.0.0 creation through the ASGI app: POST, with and without a body, deferred lengths.

Tables of request -> expected status and headers. Real stores (LocalStore on a
temp dir), real Redis locks and status cache; the job queue records what would
reach the workers.
"""

from __future__ import annotations

import httpx
import pytest
from protocol_helpers import (
    OCTETS,
    Token,
    assert_error,
    b64,
    create,
    patch,
    stored_ids,
    tus,
)

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio

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


# -- an empty upload ---------------------------------------------------------------------


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
