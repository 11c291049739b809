"""MEDIA_ACCESS=signed (the default): playback URLs handed out, and served only when signed.

A published tree (master, variants, segments, init section, subtitles) and a
`ready` status record, read through the ASGI app with real Redis and files,
the way a player and the backend read them.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from clock_helpers import Clock
from conftest import API_KEY
from hls_helpers import FILES, MASTER
from protocol_helpers import app_client
from redis import Redis
from signed_media_helpers import HOUR, publish_ready_upload

from upload_service.core.media_signing import media_signer
from upload_service.core.settings import Settings
from upload_service.core.status import CACHE_PREFIX, StatusStore


@pytest.fixture
def upload_id(settings: Settings, tmp_path: Path) -> str:
    """A `ready` upload with its outputs published, as the pipeline leaves it."""
    return publish_ready_upload(settings, tmp_path / "out")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def media_urls(outputs: dict[str, Any]) -> list[str]:
    urls = [outputs["hls"], outputs["poster"], outputs["mp4"]]
    urls += [r["url"] for r in outputs["renditions"]] + [c["url"] for c in outputs["captions"]]
    return urls


def stored_body(settings: Settings, upload_id: str) -> bytes:
    return (settings.status_dir / f"{upload_id}.json").read_bytes()


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    if response.request.method != "HEAD":
        assert response.json()["error"]["code"] == code


# One second into an expiry window, so that the whole window lies ahead.
WINDOW_START = 1_800_000_000 + 1


@pytest.fixture
async def clocked(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    """The app, its signed URLs made and checked by a clock the test moves."""
    clock = Clock(WINDOW_START)
    async with app_client(settings, clock=clock) as c:
        yield c, clock


@pytest.mark.anyio
async def test_status_hands_out_signed_urls_and_stores_plain_ones(
    clocked: tuple[httpx.AsyncClient, Clock],
    settings: Settings,
    upload_id: str,
    make_token: Callable[..., str],
    redis_client: Redis,
) -> None:
    client, _ = clocked  # one expiry window for the whole test
    first = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))
    outputs = first.json()["outputs"]
    query = urlsplit(outputs["hls"]).query
    assert query.startswith("exp=") and "&sig=" in query
    # One query for every media URL of the upload; the original is not media.
    assert {urlsplit(url).query for url in media_urls(outputs)} == {query}
    assert outputs["original"] == f"/files/{upload_id}"
    # The owner and the batch endpoint get the same URLs.
    as_owner = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(make_token()))
    assert as_owner.json()["outputs"] == outputs
    for secret in (API_KEY, make_token()):
        batch = await client.get(f"/v1/uploads?ids={upload_id}", headers=bearer(secret))
        assert batch.json()["uploads"][0]["outputs"] == outputs
    # Stored plain: the file and the Redis copy have no signature in them.
    stored = (settings.status_dir / f"{upload_id}.json").read_bytes()
    assert b"sig=" not in stored and b"sig=" not in redis_client.get(CACHE_PREFIX + upload_id)
    assert json.loads(stored)["outputs"]["hls"] == f"/media/{upload_id}/hls/master.m3u8"


@pytest.mark.anyio
async def test_records_without_media_are_served_as_stored(
    client: httpx.AsyncClient, settings: Settings, make_token: Callable[..., str]
) -> None:
    # Its metadata names a media path: only a ready record's outputs are signed.
    named = base64.b64encode(b"/media/elsewhere/poster.jpg").decode()
    created = await client.post(
        "/files/",
        headers={
            **bearer(make_token()),
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "5",
            "Upload-Metadata": f"filename {named}",
        },
    )
    assert created.status_code == 201, created.text
    new_id = created.headers["location"].rsplit("/", 1)[-1]
    stored = (settings.status_dir / f"{new_id}.json").read_bytes()
    assert b"/media/elsewhere/poster.jpg" in stored
    for _ in range(2):
        one = await client.get(f"/v1/uploads/{new_id}", headers=bearer(API_KEY))
        assert one.content == stored
        batch = await client.get(f"/v1/uploads?ids={new_id}", headers=bearer(API_KEY))
        assert batch.content == b'{"uploads":[' + stored + b"]}"


@pytest.mark.anyio
async def test_signed_urls_hold_still_between_polls_until_they_expire(
    clocked: tuple[httpx.AsyncClient, Clock],
    settings: Settings,
    upload_id: str,
    redis_client: Redis,
) -> None:
    client, clock = clocked
    url = f"/v1/uploads/{upload_id}"

    async def poll(etag: str | None = None) -> httpx.Response:
        headers = bearer(API_KEY) | ({"If-None-Match": etag} if etag else {})
        return await client.get(url, headers=headers)

    first = await poll()
    outputs = first.json()["outputs"]
    exp = int(parse_qs(urlsplit(outputs["hls"]).query)["exp"][0])
    assert exp >= clock.now + settings.media_url_ttl
    # Later in the window: the same body and ETag, so a poller's cached copy holds.
    clock.now = WINDOW_START + HOUR // 2
    again = await poll()
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert (await poll(first.headers["etag"])).status_code == 304

    # A change to the record shows at once, within the same window, signed alike.
    status = StatusStore(settings.status_dir, redis_client)
    storyboard = f"/media/{upload_id}/storyboard.vtt"
    status.update(
        upload_id,
        outputs={
            **json.loads(stored_body(settings, upload_id))["outputs"],
            "storyboard": storyboard,
        },
    )
    changed = await poll(first.headers["etag"])
    assert changed.status_code == 200 and changed.headers["etag"] != first.headers["etag"]
    signed_storyboard = changed.json()["outputs"]["storyboard"]
    assert signed_storyboard == f"{storyboard}?{urlsplit(outputs['hls']).query}"
    assert changed.json()["outputs"]["hls"] == outputs["hls"]

    # Near its end, a file is cached no longer than its URL stays valid.
    clock.now = exp - 600
    poster = await client.get(outputs["poster"])
    assert poster.status_code == 200
    assert poster.headers["cache-control"] == "max-age=600"

    # Past the expiry: the old URLs are refused, and a poll hands out fresh ones.
    clock.now = exp
    assert_refused(await client.get(outputs["poster"]), "url_expired")
    fresh = await poll(changed.headers["etag"])
    assert fresh.status_code == 200 and fresh.headers["etag"] != changed.headers["etag"]
    renewed = fresh.json()["outputs"]
    assert int(parse_qs(urlsplit(renewed["hls"]).query)["exp"][0]) >= exp + settings.media_url_ttl
    for media_url in media_urls(renewed):
        assert (await client.get(media_url)).status_code == 200, media_url


@pytest.mark.anyio
async def test_every_signed_url_plays_and_playlists_sign_what_they_name(
    client: httpx.AsyncClient, upload_id: str
) -> None:
    outputs = (await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))).json()[
        "outputs"
    ]
    query = urlsplit(outputs["hls"]).query
    assert query.startswith("exp=")
    for url in media_urls(outputs):
        for method in ("GET", "HEAD"):
            response = await client.request(method, url)
            assert response.status_code == 200, (method, url, response.text)
            assert response.headers["x-content-type-options"] == "nosniff"
    # Like a player: from the master, follow every URI a playlist names.
    fetched: dict[str, bytes] = {}
    pending = [outputs["hls"]]
    while pending:
        url = pending.pop()
        response = await client.get(url)
        assert response.status_code == 200, (url, response.text)
        name = urlsplit(url).path.removeprefix(f"/media/{upload_id}/")
        fetched[name] = response.content
        if not name.endswith(".m3u8"):
            assert response.content == FILES[name]
            continue
        assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
        uris = []
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                uris.append(line)
            uris += [part.split('"')[1] for part in line.split("URI=")[1:]]
        assert uris and all(urlsplit(uri).query == query for uri in uris), response.text
        pending += [urljoin(url, uri) for uri in uris if urljoin(url, uri) not in pending]
    assert set(fetched) == set(FILES) - {"poster.jpg", "video.mp4"}
    # The rewrite only added queries: remove them and the stored playlist is back.
    assert fetched["hls/master.m3u8"].decode().replace(f"?{query}", "") == MASTER


@pytest.mark.anyio
async def test_media_without_a_valid_signature_is_refused(
    client: httpx.AsyncClient, settings: Settings, upload_id: str
) -> None:
    signer = media_signer(settings)
    assert signer is not None
    base = f"/media/{upload_id}"
    good = signer.query(upload_id)
    exp = good.split("&")[0].removeprefix("exp=")
    long_ago = signer.query(upload_id, now=time.time() - 2 * settings.media_url_ttl - 2 * HOUR)
    for name in ("poster.jpg", "hls/master.m3u8", "hls/v0/seg_00000.ts", "missing.ts"):
        for method in ("GET", "HEAD"):
            url = f"{base}/{name}"
            assert_refused(await client.request(method, url), "bad_signature")
            assert_refused(await client.request(method, f"{url}?exp={exp}"), "bad_signature")
            forged = f"{url}?exp={int(exp) + HOUR}&sig={good.split('sig=')[1]}"
            assert_refused(await client.request(method, forged), "bad_signature")
            other = signer.query("another-upload")
            assert_refused(await client.request(method, f"{url}?{other}"), "bad_signature")
            assert_refused(await client.request(method, f"{url}?{long_ago}"), "url_expired")
    assert (await client.get(f"{base}/poster.jpg?{good}")).status_code == 200
    assert (await client.get(f"{base}/missing.ts?{good}")).status_code == 404
    # A playback signature opens no original: /files wants the owner or the API key.
    assert (await client.get(f"/files/{upload_id}?{good}")).status_code == 401


@pytest.mark.anyio
async def test_public_mode_hands_out_and_serves_plain_urls(
    settings: Settings, upload_id: str
) -> None:
    public = settings.with_changes(media_access="public")
    async with app_client(public) as client:
        record = (await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))).json()
        outputs = record["outputs"]
        assert outputs["hls"] == f"/media/{upload_id}/hls/master.m3u8"
        for url in media_urls(outputs):
            response = await client.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
        master = await client.get(outputs["hls"])
        assert master.content == FILES["hls/master.m3u8"]
