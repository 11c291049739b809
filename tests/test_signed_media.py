"""MEDIA_ACCESS=signed (the default): playback URLs carry an expiring HMAC of the upload.

A published tree (master, variants, segments, init section, subtitles) and a
`ready` status record, read through the ASGI app with real Redis and files,
the way a player and the backend read them.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from conftest import API_KEY, TOKEN_SECRET
from hls_helpers import FILES, MASTER
from protocol_helpers import app_client
from redis import Redis
from webhook_helpers import SECRET, Receiver

from processors.publish import LocalPublisher
from upload_service.core import media_signing
from upload_service.core.events import build_event
from upload_service.core.media_signing import (
    KEY_LABEL,
    MediaSigner,
    MissingSigningKey,
    media_signer,
    signing_key,
)
from upload_service.core.playback import PlaybackURLs
from upload_service.core.playlists import rewrite_uris
from upload_service.core.settings import Settings
from upload_service.core.status import CACHE_PREFIX, StatusStore, new_record
from upload_service.core.store.base import UploadInfo
from upload_service.core.webhook_log import WebhookLog

HOUR = 3600
# -- the signature -------------------------------------------------------------------------


def test_expiry_is_rounded_up_to_a_whole_window() -> None:
    signer = MediaSigner(b"k" * 32, ttl=6 * HOUR)
    now = 1_800_000_123
    exp = signer.expiry(now)
    assert exp % HOUR == 0 and now + 6 * HOUR <= exp < now + 7 * HOUR
    # The same URL all through the window: status bodies and ETags stay put.
    start = exp - 7 * HOUR + 1
    assert {signer.query("up1", t) for t in (start, start + 1800, start + HOUR - 1)} == {
        signer.query("up1", start)
    }
    assert signer.query("up1", start + HOUR) != signer.query("up1", start)
    short = MediaSigner(b"k" * 32, ttl=120)  # a window no longer than the TTL
    assert short.expiry(now) % 120 == 0 and now + 120 <= short.expiry(now) < now + 240


def test_signature_covers_the_upload_and_the_expiry() -> None:
    signer = MediaSigner(b"k" * 32, ttl=HOUR)
    now = time.time()
    exp = signer.expiry(now)
    sig = signer.signature("up1", exp)
    assert len(sig) == 43 and "=" not in sig and "+" not in sig and "/" not in sig
    assert signer.verify("up1", str(exp), sig, now) == exp
    cases = [
        ("up2", str(exp), sig),  # another upload
        ("up1", str(exp + HOUR), sig),  # a later expiry
        ("up1", str(exp), sig[:-1] + ("A" if sig[-1] != "A" else "B")),
        ("up1", str(exp), signer.signature("up1", exp).lower()),
        ("up1", None, sig),
        ("up1", str(exp), None),
        ("up1", "", ""),
        ("up1", f"{exp}.0", sig),
        ("up1", "١٢٣", sig),  # digits, but not ASCII ones
        ("up1", str(exp), "é" * 43),
    ]
    for upload_id, e, s in cases:
        with pytest.raises(Exception) as raised:
            signer.verify(upload_id, e, s, now)
        assert getattr(raised.value, "code", None) == "bad_signature", (upload_id, e, s)
    other_key = MediaSigner(b"x" * 32, ttl=HOUR)
    with pytest.raises(Exception) as raised:
        other_key.verify("up1", str(exp), sig, now)
    assert getattr(raised.value, "code", None) == "bad_signature"
    with pytest.raises(Exception) as raised:
        signer.verify("up1", str(exp), sig, now=exp)
    assert getattr(raised.value, "code", None) == "url_expired"


def test_the_key_is_derived_from_the_token_secret_unless_given(tmp_path: Path) -> None:
    import hashlib
    import hmac

    base = Settings(data_dir=tmp_path, token_secret=TOKEN_SECRET)
    derived = signing_key(base)
    assert derived == hmac.new(TOKEN_SECRET.encode(), KEY_LABEL, hashlib.sha256).digest()
    assert derived != TOKEN_SECRET.encode()
    assert signing_key(base.with_changes(token_secret="another")) != derived
    assert signing_key(base.with_changes(media_signing_key="given")) == b"given"
    with pytest.raises(MissingSigningKey):
        signing_key(base.with_changes(token_secret=None))
    assert media_signer(base.with_changes(media_access="public")) is None


def test_settings(tmp_path: Path) -> None:
    none = tmp_path / "none"
    default = Settings.from_env({}, dotenv=none)
    assert (default.media_access, default.media_url_ttl) == ("signed", 6 * HOUR)
    env = {"MEDIA_ACCESS": "Public", "MEDIA_URL_TTL": "600", "MEDIA_SIGNING_KEY": "k"}
    given = Settings.from_env(env, dotenv=none)
    assert (given.media_access, given.media_url_ttl, given.media_signing_key) == (
        "public",
        600,
        "k",
    )
    for bad in ({"MEDIA_ACCESS": "open"}, {"MEDIA_URL_TTL": "59"}, {"MEDIA_URL_TTL": "x"}):
        with pytest.raises(SystemExit):
            Settings.from_env(bad, dotenv=none)


def test_playlist_uris_are_all_rewritten_and_nothing_else() -> None:
    crlf = MASTER.replace("\n", "\r\n").encode()
    out = rewrite_uris(crlf, lambda uri: f"<{uri}>").decode()
    assert out == (
        "#EXTM3U\r\n"
        "#EXT-X-VERSION:6\r\n"
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="en",LANGUAGE="en",URI="<subs_en.m3u8>"\r\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,SUBTITLES="subs"\r\n'
        "<v0/index.m3u8>\r\n"
        '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="<v0/iframes.m3u8>"\r\n'
    )


# -- through the app -----------------------------------------------------------------------


@pytest.fixture
def upload_id(settings: Settings, tmp_path: Path) -> str:
    """A `ready` upload with its outputs published, as the pipeline leaves it."""
    upload_id = "signed-1"
    work = tmp_path / "out"
    items = []
    for name, data in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
        items.append((work / name, name))
    urls = LocalPublisher(settings.media_dir, settings.media_base).publish(
        upload_id, items, lambda p: None
    )
    status = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    status.put(new_record(UploadInfo(id=upload_id, owner="user-1", length=9, offset=9)))
    status.update(
        upload_id,
        state="ready",
        outputs={
            "original": settings.download_url(upload_id),
            "hls": urls["hls/master.m3u8"],
            "poster": urls["poster.jpg"],
            "mp4": urls["video.mp4"],
            "renditions": [{"height": 360, "width": 640, "url": urls["hls/v0/index.m3u8"]}],
            "captions": [{"lang": "en", "format": "vtt", "url": urls["hls/subs_en.vtt"]}],
        },
    )
    return upload_id


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


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text
    if response.request.method != "HEAD":
        assert response.json()["error"]["code"] == code


@pytest.mark.anyio
async def test_status_hands_out_signed_urls_and_stores_plain_ones(
    client: httpx.AsyncClient,
    settings: Settings,
    upload_id: str,
    make_token: Callable[..., str],
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One expiry window for the whole test, even one run across the hour.
    now = time.time()
    monkeypatch.setattr(media_signing, "time", SimpleNamespace(time=lambda: now))
    first = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))
    outputs = first.json()["outputs"]
    query = urlsplit(outputs["hls"]).query
    assert query.startswith("exp=") and "&sig=" in query
    # One query for every media URL of the upload; the original is not media.
    assert {urlsplit(url).query for url in media_urls(outputs)} == {query}
    assert outputs["original"] == f"/files/{upload_id}"
    # The owner and the batch endpoint get the same URLs, and the same body twice.
    as_owner = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(make_token()))
    assert as_owner.json()["outputs"] == outputs
    again = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    cached = await client.get(
        f"/v1/uploads/{upload_id}",
        headers={**bearer(API_KEY), "If-None-Match": first.headers["etag"]},
    )
    assert cached.status_code == 304
    for secret in (API_KEY, make_token()):
        batch = await client.get(f"/v1/uploads?ids={upload_id}", headers=bearer(secret))
        assert batch.json()["uploads"][0]["outputs"] == outputs
    # Stored plain: the file and the Redis copy have no signature in them.
    stored = (settings.status_dir / f"{upload_id}.json").read_bytes()
    assert b"sig=" not in stored and b"sig=" not in redis_client.get(CACHE_PREFIX + upload_id)
    assert json.loads(stored)["outputs"]["hls"] == f"/media/{upload_id}/hls/master.m3u8"


@pytest.mark.anyio
async def test_polls_of_records_without_media_skip_the_parse(
    client: httpx.AsyncClient, settings: Settings, upload_id: str, make_token: Callable[..., str]
) -> None:
    token = make_token()
    created = await client.post(
        "/files/", headers={**bearer(token), "Tus-Resumable": "1.0.0", "Upload-Length": "5"}
    )
    new_id = created.headers["location"].rsplit("/", 1)[-1]
    response = await client.get(f"/v1/uploads/{new_id}", headers=bearer(API_KEY))
    raw = (settings.status_dir / f"{new_id}.json").read_bytes()
    assert response.content == raw
    playback = PlaybackURLs.from_settings(settings)
    # Not parsed at all: the very bytes given come back.
    assert playback.body(raw) is raw
    # A ready record is parsed once per window, then served from the memo.
    ready = (settings.status_dir / f"{upload_id}.json").read_bytes()
    signed = playback.body(ready)
    assert signed != ready and playback.body(bytes(ready)) is signed


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


def test_signing_leaves_other_urls_and_the_original_alone(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        token_secret=TOKEN_SECRET,
        public_url="https://up.example.com",
        media_public_url="https://media.example.com/media",
    )
    playback = PlaybackURLs.from_settings(settings)
    record = {
        "id": "up1",
        "outputs": {
            "original": "https://up.example.com/files/up1",
            "hls": "https://media.example.com/media/up1/hls/master.m3u8",
            "poster": "https://media.example.com/media/up2/poster.jpg",  # not this upload's
            "elsewhere": "https://cdn.example.com/media/up1/x.ts",
        },
        "meta": {"link": "https://media.example.com/media/up1/poster.jpg"},
    }
    signed = playback.record(record)
    assert signed["outputs"]["hls"].startswith(record["outputs"]["hls"] + "?exp=")
    for key in ("original", "poster", "elsewhere"):
        assert signed["outputs"][key] == record["outputs"][key]
    assert signed["meta"] == record["meta"]
    assert record["outputs"]["hls"].endswith(".m3u8")  # the record itself is untouched


# -- webhooks ------------------------------------------------------------------------------


@pytest.fixture
def webhooks() -> ModuleType:
    return importlib.import_module("processors.webhooks")


def test_webhook_bodies_are_signed_at_delivery_and_logged_plain(
    settings: Settings, upload_id: str, webhooks: ModuleType, receiver: Receiver
) -> None:
    try:
        hook_settings = settings.with_changes(webhook_url=receiver.url, webhook_secret=SECRET)
        webhooks.configure(hook_settings)
        record = StatusStore(settings.status_dir, None).get(upload_id)
        assert record is not None
        event = build_event("media.ready", record)
        assert webhooks.deliver(event) == "delivered"
    finally:
        webhooks.configure(None)
    [request] = receiver.requests
    outputs = json.loads(request.body)["data"]["outputs"]
    expected = PlaybackURLs.from_settings(settings).record(record)["outputs"]
    assert outputs == expected and "?exp=" in outputs["hls"]
    assert outputs["original"] == f"/files/{upload_id}"
    # The log keeps the event as emitted: a resend is signed afresh when it goes out.
    [logged] = WebhookLog(settings.data_dir / "webhooks").history(upload_id)
    assert logged["data"]["outputs"]["hls"] == f"/media/{upload_id}/hls/master.m3u8"


def test_a_worker_without_a_key_does_not_send_unsigned_media(
    settings: Settings, upload_id: str, webhooks: ModuleType, receiver: Receiver
) -> None:
    keyless = settings.with_changes(
        token_secret=None, webhook_url=receiver.url, webhook_secret=SECRET
    )
    record = StatusStore(settings.status_dir, None).get(upload_id)
    assert record is not None
    result = webhooks.attempt_delivery(keyless, build_event("media.ready", record))
    assert result.status is None and "MEDIA_SIGNING_KEY" in result.error
    assert receiver.requests == []
    public = keyless.with_changes(media_access="public")
    assert webhooks.attempt_delivery(public, build_event("media.ready", record)).ok
