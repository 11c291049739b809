"""tus extensions through the ASGI app: checksum, expiration, concatenation.

Each test names the rule it covers; the bytes are checked by downloading them
again (GET /files/{id}), not by trusting the offsets.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from tus_helpers import (
    OFFSET_TYPE,
    age_upload,
    checksum,
    create,
    download,
    finished_upload,
    head,
    patch,
    tus,
)

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio

# -- checksum ---------------------------------------------------------------------


async def test_options_advertises_extensions_and_algorithms(client: httpx.AsyncClient) -> None:
    r = await client.options("/files/")
    assert r.status_code == 204
    extensions = r.headers["tus-extension"].split(",")
    for name in ("checksum", "expiration", "concatenation", "termination", "creation"):
        assert name in extensions
    assert set(r.headers["tus-checksum-algorithm"].split(",")) == {"md5", "sha1", "sha256"}


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
async def test_checksum_right_is_accepted(
    client: httpx.AsyncClient, make_token: Callable[..., str], algorithm: str
) -> None:
    token = make_token()
    first, second = os.urandom(3000), os.urandom(2000)
    upload_id = await create(client, token, 5000)
    r = await patch(
        client, token, upload_id, 0, first, **{"Upload-Checksum": checksum(algorithm, first)}
    )
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == "3000"
    r = await patch(
        client, token, upload_id, 3000, second, **{"Upload-Checksum": checksum(algorithm, second)}
    )
    assert r.status_code == 204, r.text
    assert await download(client, token, upload_id) == first + second


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
async def test_checksum_mismatch_is_460_and_discards_the_chunk(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings, algorithm: str
) -> None:
    token = make_token()
    first, second = os.urandom(1000), os.urandom(1500)
    upload_id = await create(client, token, 2500)
    assert (await patch(client, token, upload_id, 0, first)).status_code == 204
    wrong = checksum(algorithm, b"something else")
    r = await patch(client, token, upload_id, 1000, second, **{"Upload-Checksum": wrong})
    assert r.status_code == 460, r.text
    assert r.json()["error"]["code"] == "checksum_mismatch"
    # The offset stays where it was and none of the chunk's bytes were kept.
    assert (await head(client, token, upload_id)).headers["upload-offset"] == "1000"
    assert data_sizes(settings) == [1000]
    # The client resends the same chunk correctly and the upload completes intact.
    right = checksum(algorithm, second)
    r = await patch(client, token, upload_id, 1000, second, **{"Upload-Checksum": right})
    assert r.status_code == 204, r.text
    assert await download(client, token, upload_id) == first + second


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("crc32 AAAAAA==", "unsupported_checksum"),
        (
            "sha512 " + base64.b64encode(hashlib.sha512(b"x").digest()).decode(),
            "unsupported_checksum",
        ),
        ("sha1 not-base64!!", "invalid_checksum"),
        ("sha1 " + base64.b64encode(b"short").decode(), "invalid_checksum"),
        ("md5", "invalid_checksum"),
    ],
)
async def test_checksum_unsupported_or_malformed_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str], value: str, code: str
) -> None:
    token = make_token()
    upload_id = await create(client, token, 10)
    r = await patch(client, token, upload_id, 0, b"0123456789", **{"Upload-Checksum": value})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert (await head(client, token, upload_id)).headers["upload-offset"] == "0"


async def test_creation_with_upload_and_checksum(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    data = os.urandom(4096)
    r = await client.post(
        "/files/",
        content=data,
        headers=tus(
            token,
            **{
                "Upload-Length": "4096",
                "Content-Type": OFFSET_TYPE,
                "Upload-Checksum": checksum("sha256", data),
            },
        ),
    )
    assert r.status_code == 201, r.text
    assert r.headers["upload-offset"] == "4096"
    upload_id = r.headers["location"].rsplit("/", 1)[-1]
    assert await download(client, token, upload_id) == data


def data_sizes(settings: Settings) -> list[int]:
    return [
        p.stat().st_size for p in settings.uploads_dir.iterdir() if not p.name.endswith(".info")
    ]


async def test_creation_with_upload_and_wrong_checksum_keeps_no_bytes(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    data = os.urandom(4096)
    r = await client.post(
        "/files/",
        content=data,
        headers=tus(
            token,
            **{
                "Upload-Length": "8192",
                "Content-Type": OFFSET_TYPE,
                "Upload-Checksum": checksum("md5", b"not the data"),
            },
        ),
    )
    assert r.status_code == 460, r.text
    # The upload was created before its first chunk failed: it exists, empty.
    assert data_sizes(settings) == [0]


# -- expiration -------------------------------------------------------------------


def _expires(response: httpx.Response) -> float:
    return parsedate_to_datetime(response.headers["upload-expires"]).timestamp()


async def test_upload_expires_on_post_patch_head_of_unfinished_uploads(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    before = time.time()
    r = await client.post("/files/", headers=tus(token, **{"Upload-Length": "20"}))
    upload_id = r.headers["location"].rsplit("/", 1)[-1]
    # HTTP dates have whole seconds: allow one on either side.
    assert before + settings.expiry - 1 <= _expires(r) <= time.time() + settings.expiry + 1
    r = await patch(client, token, upload_id, 0, b"0123456789")
    assert r.status_code == 204
    assert _expires(r) >= before + settings.expiry - 1
    r = await head(client, token, upload_id)
    assert r.status_code == 200
    assert _expires(r) >= before + settings.expiry - 1


async def test_finished_uploads_carry_no_upload_expires(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    upload_id = await create(client, token, 20)
    assert "upload-expires" in (await patch(client, token, upload_id, 0, b"x" * 10)).headers
    r = await patch(client, token, upload_id, 10, b"y" * 10)
    assert r.status_code == 204
    assert "upload-expires" not in r.headers
    r = await head(client, token, upload_id)
    assert r.headers["upload-offset"] == "20"
    assert "upload-expires" not in r.headers


async def test_expired_upload_answers_410_on_head_and_patch(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    upload_id = await create(client, token, 100)
    assert (await patch(client, token, upload_id, 0, b"a" * 10)).status_code == 204
    age_upload(settings, upload_id, settings.expiry + 60)
    r = await head(client, token, upload_id)
    assert r.status_code == 410
    r = await patch(client, token, upload_id, 10, b"b" * 10)
    assert r.status_code == 410, r.text
    assert r.json()["error"]["code"] == "gone"


async def test_an_upload_just_inside_its_expiry_still_answers(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    upload_id = await create(client, token, 100)
    age_upload(settings, upload_id, settings.expiry - 120)
    r = await head(client, token, upload_id)
    assert r.status_code == 200
    # A change restarts the clock: Upload-Expires moves a whole expiry ahead.
    r = await patch(client, token, upload_id, 0, b"a" * 10)
    assert r.status_code == 204
    assert _expires(r) >= time.time() + settings.expiry - 5


async def test_finished_upload_never_expires(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    upload_id = await finished_upload(client, token, b"done" * 5)
    age_upload(settings, upload_id, settings.expiry * 3)
    r = await head(client, token, upload_id)
    assert r.status_code == 200
    assert await download(client, token, upload_id) == b"done" * 5


async def test_short_expiry_setting_is_used(
    tmp_path: Path, settings: Settings, make_token: Callable[..., str]
) -> None:
    from upload_service.http.app import create_app
    from upload_service.http.services import Services

    short = settings.with_changes(expiry=30)
    services = Services.from_settings(short, jobs=MemoryJobQueue())
    transport = httpx.ASGITransport(app=create_app(short, services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        token = make_token()
        r = await c.post("/files/", headers=tus(token, **{"Upload-Length": "5"}))
        assert _expires(r) <= time.time() + 31
        upload_id = r.headers["location"].rsplit("/", 1)[-1]
        age_upload(short, upload_id, 31)
        assert (await head(c, token, upload_id)).status_code == 410
    await services.aclose()


# -- concatenation ----------------------------------------------------------------


async def partial(client: httpx.AsyncClient, token: str, data: bytes, finish: bool = True) -> str:
    upload_id = await create(client, token, len(data), **{"Upload-Concat": "partial"})
    if finish:
        r = await patch(client, token, upload_id, 0, data)
        assert r.status_code == 204, r.text
    return upload_id


async def test_concatenation_joins_partials_into_a_finished_upload(
    client: httpx.AsyncClient, make_token: Callable[..., str], jobs: MemoryJobQueue
) -> None:
    token = make_token()
    parts = [os.urandom(70_000), os.urandom(1), os.urandom(130_001)]
    ids = [await partial(client, token, p) for p in parts]
    r = await head(client, token, ids[0])
    assert r.headers["upload-concat"] == "partial"
    # Partials are pieces, not media: finishing them starts no processing.
    assert [a for a, _ in jobs.sent if a == "process_upload"] == []

    # Absolute and relative URLs both name a partial.
    urls = [f"http://testserver/files/{ids[0]}", f"/files/{ids[1]}", f"/files/{ids[2]}"]
    r = await client.post(
        "/files/", headers=tus(token, **{"Upload-Concat": "final;" + " ".join(urls)})
    )
    assert r.status_code == 201, r.text
    assert "upload-expires" not in r.headers
    final_id = r.headers["location"].rsplit("/", 1)[-1]

    assert await download(client, token, final_id) == b"".join(parts)
    total = str(sum(len(p) for p in parts))
    r = await head(client, token, final_id)
    assert r.status_code == 200
    assert r.headers["upload-offset"] == total
    assert r.headers["upload-length"] == total
    assert "upload-expires" not in r.headers
    concat = r.headers["upload-concat"]
    assert concat.startswith("final;")
    assert [u.rsplit("/", 1)[-1] for u in concat[len("final;") :].split()] == ids

    # The final upload is processed like any other, exactly once.
    assert [args for a, args in jobs.sent if a == "process_upload"] == [(final_id,)]
    status = await client.get(
        f"/v1/uploads/{final_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert status.status_code == 200
    assert status.json()["state"] == "uploaded"
    assert status.json()["length"] == int(total)


async def test_patch_on_a_final_upload_is_403(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    a = await partial(client, token, b"abc")
    r = await client.post("/files/", headers=tus(token, **{"Upload-Concat": f"final;/files/{a}"}))
    final_id = r.headers["location"].rsplit("/", 1)[-1]
    r = await patch(client, token, final_id, 3, b"more")
    assert r.status_code == 403, r.text
    assert await download(client, token, final_id) == b"abc"


async def final_error(client: httpx.AsyncClient, token: str, concat: str) -> httpx.Response:
    r = await client.post("/files/", headers=tus(token, **{"Upload-Concat": concat}))
    assert r.status_code == 400, r.text
    return r


async def test_final_naming_another_owners_partial_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    mine, theirs = make_token("user-1"), make_token("user-2")
    a = await partial(client, mine, b"mine")
    b = await partial(client, theirs, b"theirs")
    r = await final_error(client, mine, f"final;/files/{a} /files/{b}")
    assert b in r.json()["error"]["message"]
    assert "not found" in r.json()["error"]["message"]


async def test_final_naming_an_unfinished_partial_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    a = await partial(client, token, b"done")
    b = await partial(client, token, b"not yet", finish=False)
    r = await final_error(client, token, f"final;/files/{a} /files/{b}")
    assert "not finished" in r.json()["error"]["message"]


async def test_final_naming_a_plain_upload_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    a = await partial(client, token, b"part")
    plain = await finished_upload(client, token, b"plain")
    r = await final_error(client, token, f"final;/files/{a} /files/{plain}")
    assert "not a partial upload" in r.json()["error"]["message"]


async def test_final_naming_a_missing_upload_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str], jobs: MemoryJobQueue
) -> None:
    token = make_token()
    a = await partial(client, token, b"part")
    r = await final_error(client, token, f"final;/files/{a} /files/doesnotexist")
    assert "doesnotexist" in r.json()["error"]["message"]
    assert [a for a, _ in jobs.sent if a == "process_upload"] == []


@pytest.mark.parametrize("value", ["bogus", "final;", "final", "partial;x", "final; "])
async def test_malformed_upload_concat_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str], value: str
) -> None:
    r = await final_error(client, make_token(), value)
    assert r.json()["error"]["code"] == "invalid_concat"


async def test_final_with_upload_length_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    a = await partial(client, token, b"part")
    r = await client.post(
        "/files/",
        headers=tus(token, **{"Upload-Concat": f"final;/files/{a}", "Upload-Length": "4"}),
    )
    assert r.status_code == 400, r.text


async def test_final_larger_than_the_token_allows_is_413(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token(max_bytes=1000)
    a = await partial(client, token, os.urandom(600))
    b = await partial(client, token, os.urandom(600))
    r = await client.post(
        "/files/", headers=tus(token, **{"Upload-Concat": f"final;/files/{a} /files/{b}"})
    )
    assert r.status_code == 413, r.text
