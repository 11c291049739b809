"""Signed playback of media in a private B2 bucket (b2sdk's RawSimulator).

The simulator answers `get_download_authorization` with a token that spells
out the bucket, the prefix and the duration it covers, but does not check
tokens on downloads (its own TODO): these tests check which token every URL
carries and that the object it names holds the right bytes; that B2 enforces
the token is B2's part.
"""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import anyio.to_thread
import httpx
import pytest
from b2_helpers import PART, FakeB2, make_fake_b2
from conftest import API_KEY
from hls_helpers import FILES
from protocol_helpers import app_client
from redis import Redis

from processors import b2
from processors.b2 import B2Publisher
from processors.publish import make_publisher
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store.base import UploadInfo
from upload_service.http.media import make_media_source
from upload_service.http.media_b2 import B2Media
from upload_service.http.media_files import LocalMedia

pytestmark = pytest.mark.anyio

UPLOAD_ID = "b2-signed-1"
NOW = 1_800_000_000.0  # a fixed clock: one window for the whole test
DOWNLOAD = "http://download.example.com/file/media-bucket"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeB2:
    fake = make_fake_b2()
    monkeypatch.setattr(b2, "api_factory", lambda s: fake.api)  # the publisher's hook
    return fake


class Calls(dict[str, int]):
    """How many authorizations and downloads the simulator served; the test's own
    reads of the bucket (`stored`) are left out. While `release` is set to an event,
    downloads wait for it: a B2 that stalls."""

    def __init__(self) -> None:
        super().__init__(authorize=0, download=0)
        self.paused = False
        self.release: threading.Event | None = None
        self.stalled = threading.Event()


@pytest.fixture
def calls(fake: FakeB2, monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls()
    for method, kind in (
        ("get_download_authorization", "authorize"),
        ("download_file_from_url", "download"),
    ):
        original = getattr(fake.sim, method)

        def counted(*args: Any, _original: Any = original, _kind: str = kind, **kw: Any) -> Any:
            if not seen.paused:
                seen[_kind] += 1
                if _kind == "download" and seen.release is not None:
                    seen.stalled.set()
                    seen.release.wait(10)
            return _original(*args, **kw)

        monkeypatch.setattr(fake.sim, method, counted)
    return seen


@pytest.fixture
def b2_settings(settings: Settings, fake: FakeB2) -> Settings:
    return settings.with_changes(
        b2_key_id="key-id",
        b2_key="key",
        b2_bucket=fake.bucket.name,
        b2_prefix="media",
        b2_part_size=PART,
        media_url_ttl=6 * 3600,
    )


@pytest.fixture
def published(b2_settings: Settings, tmp_path: Path) -> dict[str, str]:
    """FILES published to the bucket as the worker does, and a `ready` record."""
    items = []
    for name, data in FILES.items():
        path = tmp_path / "out" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        items.append((path, name))
    publisher = make_publisher(b2_settings)
    assert isinstance(publisher, B2Publisher)
    urls = publisher.publish(UPLOAD_ID, items, lambda p: None)
    status = StatusStore(b2_settings.status_dir, Redis.from_url(b2_settings.redis_url))
    status.put(new_record(UploadInfo(id=UPLOAD_ID, owner="user-1", length=9, offset=9)))
    status.update(
        UPLOAD_ID,
        state="ready",
        outputs={
            "original": b2_settings.download_url(UPLOAD_ID),
            "hls": urls["hls/master.m3u8"],
            "poster": urls["poster.jpg"],
            "renditions": [{"height": 360, "url": urls["hls/v0/index.m3u8"]}],
        },
    )
    return urls


@pytest.fixture
async def client(
    b2_settings: Settings, fake: FakeB2, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    # The signed query is the wall clock's; B2Media's windows are the fixed clock's.
    media = B2Media.from_settings(b2_settings, api_factory=lambda: fake.api)
    media.clock = lambda: NOW
    async with app_client(b2_settings, media=media) as c:
        yield c


def token_for(fake: FakeB2, settings: Settings) -> str:
    """The simulator's token for the upload's folder, for the TTL plus a window."""
    seconds = settings.media_url_ttl + 3600
    return f"fake_download_auth_token_{fake.bucket.id_}_media/{UPLOAD_ID}/_{seconds}"


def stored(fake: FakeB2, key: str, calls: Calls) -> bytes:
    buffer = io.BytesIO()
    calls.paused = True
    try:
        fake.bucket.download_file_by_name(key).save(buffer)
    finally:
        calls.paused = False
    return buffer.getvalue()


def check_direct(url: str, fake: FakeB2, settings: Settings, calls: Calls) -> bytes:
    """A direct B2 URL: the bucket's download URL, the upload's token; returns its bytes."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}".startswith(f"{DOWNLOAD}/media/")
    assert parse_qs(parts.query) == {"Authorization": [token_for(fake, settings)]}
    return stored(fake, parts.path.removeprefix("/file/media-bucket/"), calls)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_playback_is_signed_here_then_straight_from_the_private_bucket(
    client: httpx.AsyncClient,
    fake: FakeB2,
    b2_settings: Settings,
    published: dict[str, str],
    calls: Calls,
) -> None:
    assert fake.bucket.type_ == "allPrivate"
    # The publisher's URLs are the server's /media, never the bucket's.
    assert published["hls/master.m3u8"] == f"/media/{UPLOAD_ID}/hls/master.m3u8"
    for _ in range(3):  # polls never reach B2 (a call to B2 is billed, and can fail)
        record = (await client.get(f"/v1/uploads/{UPLOAD_ID}", headers=bearer(API_KEY))).json()
    assert calls == {"authorize": 0, "download": 0}
    outputs = record["outputs"]
    query = urlsplit(outputs["hls"]).query
    assert query.startswith("exp=") and outputs["original"] == f"/files/{UPLOAD_ID}"

    # B2 stalls on the master playlist: the server answers other requests meanwhile.
    calls.release = threading.Event()
    master: list[httpx.Response] = []

    async def play() -> None:
        master.append(await client.get(outputs["hls"]))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(play)
        assert await anyio.to_thread.run_sync(calls.stalled.wait, 10)
        poll = await client.get(f"/v1/uploads/{UPLOAD_ID}", headers=bearer(API_KEY))
        assert poll.status_code == 200 and not master  # the master still waits on B2
        calls.release.set()
    assert master[0].status_code == 200
    calls.release = None

    # Like a player, from the master: playlists from here, the rest from B2.
    pending, seen_direct = [outputs["hls"]], {}
    playlists = set()
    while pending:
        url = pending.pop()
        response = await client.get(url)
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert response.headers["x-content-type-options"] == "nosniff"
        name = urlsplit(url).path.removeprefix(f"/media/{UPLOAD_ID}/")
        playlists.add(name)
        for line in response.text.splitlines():
            uris = [part.split('"')[1] for part in line.split("URI=")[1:]]
            if line and not line.startswith("#"):
                uris.append(line)
            for uri in uris:
                if uri.split("?")[0].endswith(".m3u8"):
                    assert urlsplit(uri).query == query and not urlsplit(uri).netloc, uri
                    pending.append(urljoin(url, uri))
                else:
                    target = urljoin(url, uri)
                    key = urlsplit(target).path.removeprefix("/file/media-bucket/")
                    seen_direct[key] = check_direct(target, fake, b2_settings, calls)
    assert playlists == {n for n in FILES if n.endswith(".m3u8")}
    assert seen_direct == {
        f"media/{UPLOAD_ID}/{n}": FILES[n]
        for n in (
            "hls/v0/init.mp4",
            "hls/v0/seg_00000.ts",
            "hls/v0/seg_00001.ts",
            "hls/subs_en.vtt",
        )
    }

    # Any other file: a redirect to the same kind of URL.
    for method in ("GET", "HEAD"):
        poster = await client.request(method, outputs["poster"])
        assert poster.status_code == 302
        assert poster.headers["cache-control"] == "no-store"
        assert poster.headers["x-content-type-options"] == "nosniff"
        assert (
            check_direct(poster.headers["location"], fake, b2_settings, calls)
            == FILES["poster.jpg"]
        )

    # One authorization for the upload's window; each playlist downloaded once:
    # B2 bills its calls, and caps authorizations a day.
    again = await client.get(outputs["hls"])
    assert again.status_code == 200
    assert calls == {"authorize": 1, "download": len(playlists)}


async def test_unsigned_or_hostile_requests_never_reach_b2(
    client: httpx.AsyncClient, published: dict[str, str], calls: Calls
) -> None:
    base = f"/media/{UPLOAD_ID}"
    for url in (
        f"{base}/poster.jpg",
        f"{base}/hls/master.m3u8",
        f"{base}/poster.jpg?exp=99999999999&sig=forged",
    ):
        response = await client.get(url)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "bad_signature"
    status = (await client.get(f"/v1/uploads/{UPLOAD_ID}", headers=bearer(API_KEY))).json()
    query = urlsplit(status["outputs"]["hls"]).query
    for name in ("hls/%2E%2E/%2E%2E/x.ts", ".hidden", "original.mp4"):
        assert (await client.get(f"{base}/{name}?{query}")).status_code == 404, name
    assert calls == {"authorize": 0, "download": 0}
    missing = await client.get(f"{base}/hls/none.m3u8?{query}")
    assert missing.status_code == 404


def test_the_media_source_follows_the_publisher_and_the_mode(
    b2_settings: Settings, tmp_path: Path
) -> None:
    assert isinstance(make_media_source(b2_settings), B2Media)
    assert isinstance(
        make_media_source(b2_settings.with_changes(media_access="public")), LocalMedia
    )
    local = Settings(data_dir=tmp_path, token_secret="s")
    assert isinstance(make_media_source(local), LocalMedia)
