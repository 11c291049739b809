"""/media: published files only, typed from a fixed map, never as active content.

Files are published the way the worker does it (LocalPublisher), then fetched
through the ASGI app with real Redis and real files.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from protocol_helpers import app_client

from processors.publish import LocalPublisher
from upload_service.core.settings import Settings
from upload_service.http.media_files import BLOCK

pytestmark = pytest.mark.anyio

UPLOAD_ID = "media-1"
SECURITY = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "sandbox; default-src 'none'",
    "cross-origin-resource-policy": "cross-origin",
}
# name -> the type it must be served as
PUBLISHED = {
    "hls/master.m3u8": "application/vnd.apple.mpegurl",
    "hls/v0/seg_00000.ts": "video/mp2t",
    "hls/v0/init.m4s": "video/mp4",
    "video.mp4": "video/mp4",
    "audio.m4a": "audio/mp4",
    "poster.jpg": "image/jpeg",
    "captions/en.vtt": "text/vtt",
    "captions/en.srt": "application/x-subrip",
    "transcript.json": "application/json",
    "transcript.txt": "text/plain; charset=utf-8",
    # Names the service never writes: bytes, whatever they hold.
    "notes.html": "application/octet-stream",
    "image.svg": "application/octet-stream",
    "page.xhtml": "application/octet-stream",
    "script.js": "application/octet-stream",
    "noext": "application/octet-stream",
}
HTML = b"<!doctype html><script>alert(document.domain)</script>"
PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/index.m3u8\n"


@pytest.fixture
def media_settings(settings: Settings) -> Settings:
    # Public: what is served, and how, is the same in both modes; the signature
    # in front of it is test_signed_media_serving.py's.
    return settings.with_changes(media_access="public")


@pytest.fixture
async def media_client(media_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(media_settings) as c:
        yield c


def publish(settings: Settings, tmp_path: Path, files: dict[str, bytes]) -> None:
    work = tmp_path / "out"
    items = []
    for name, data in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        items.append((path, name))
    LocalPublisher(settings.media_dir).publish(UPLOAD_ID, items, lambda p: None)


def contents(name: str) -> bytes:
    return PLAYLIST if name.endswith(".m3u8") else HTML + name.encode()


async def test_every_file_is_typed_from_the_fixed_map_with_safe_headers(
    media_client: httpx.AsyncClient, media_settings: Settings, tmp_path: Path
) -> None:
    publish(media_settings, tmp_path, {name: contents(name) for name in PUBLISHED})
    for name, expected in PUBLISHED.items():
        for method in ("GET", "HEAD"):
            response = await media_client.request(method, f"/media/{UPLOAD_ID}/{name}")
            assert response.status_code == 200, (name, response.text)
            assert response.headers["content-type"] == expected, name
            for header, value in SECURITY.items():
                assert response.headers[header] == value, (name, header)
            assert int(response.headers["content-length"]) == len(contents(name))
            if method == "GET":
                assert response.content == contents(name)
            else:
                assert response.content == b""
            assert "text/html" not in response.headers["content-type"]


async def test_ranges_validators_and_conditional_requests(
    media_client: httpx.AsyncClient, media_settings: Settings, tmp_path: Path
) -> None:
    data = os.urandom(3 * BLOCK + 123)
    publish(media_settings, tmp_path, {"video.mp4": data})
    url = f"/media/{UPLOAD_ID}/video.mp4"
    whole = await media_client.get(url)
    assert whole.content == data and whole.headers["accept-ranges"] == "bytes"
    etag, modified = whole.headers["etag"], whole.headers["last-modified"]

    part = await media_client.get(url, headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    assert part.headers["content-length"] == "200"
    assert part.headers["x-content-type-options"] == "nosniff"
    tail = await media_client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    across = await media_client.get(url, headers={"Range": f"bytes={BLOCK - 5}-{2 * BLOCK + 5}"})
    assert across.content == data[BLOCK - 5 : 2 * BLOCK + 6]
    head = await media_client.head(url, headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10"
    assert head.content == b""
    beyond = await media_client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"

    assert (await media_client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert (await media_client.get(url, headers={"If-Modified-Since": modified})).status_code == 304
    stale = await media_client.get(url, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    # If-Range naming another version: the whole file, not the range.
    moved = await media_client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert moved.status_code == 200 and moved.content == data
    same = await media_client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[:10]


async def test_files_are_streamed_in_blocks_not_read_whole(
    media_client: httpx.AsyncClient, media_settings: Settings, tmp_path: Path
) -> None:
    data = os.urandom(5 * BLOCK + 7)
    publish(media_settings, tmp_path, {"video.mp4": data})
    app: Any = media_client.app  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/media/{UPLOAD_ID}/video.mp4",
        "raw_path": f"/media/{UPLOAD_ID}/video.mp4".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio_sleep_forever()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    assert b"".join(bodies) == data
    assert len(bodies) >= 6 and max(len(b) for b in bodies) <= BLOCK


async def anyio_sleep_forever() -> None:
    import anyio

    await anyio.sleep_forever()


@pytest.mark.parametrize(
    "path",
    [
        "hls/../poster.jpg",
        "./poster.jpg",
        ".hidden",
        "hls/.hidden",
        "poster.jpg/",
        "hls//master.m3u8",
        "",
        "a\\b.jpg",
        "poster.jpg\x00.txt",
        "original",
        "original.html",
        "original.mp4",
        "link.jpg",
        "linkdir/poster.jpg",
        "fifo.ts",
        "hls",
        "missing.ts",
    ],
)
async def test_only_regular_files_inside_the_upload_folder(
    media_client: httpx.AsyncClient, media_settings: Settings, tmp_path: Path, path: str
) -> None:
    publish(media_settings, tmp_path, {"poster.jpg": b"\xff\xd8jpeg", "hls/master.m3u8": PLAYLIST})
    folder = media_settings.media_dir / UPLOAD_ID
    # What an older publication, an operator or an attacker with a foothold left there.
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"SECRET-OUTSIDE")
    (folder / ".hidden").write_bytes(b"SECRET-OUTSIDE")
    (folder / "hls" / ".hidden").write_bytes(b"SECRET-OUTSIDE")
    (folder / "original.html").write_bytes(b"SECRET-OUTSIDE")
    (folder / "original.mp4").write_bytes(b"SECRET-OUTSIDE")
    (folder / "original").write_bytes(b"SECRET-OUTSIDE")
    (folder / "link.jpg").symlink_to(outside)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "poster.jpg").write_bytes(b"SECRET-OUTSIDE")
    (folder / "linkdir").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(folder / "fifo.ts")

    # Dots too: the client would otherwise resolve "hls/../poster.jpg" before sending it.
    encoded = "".join(c if c.isalnum() or c in "/_-" else f"%{ord(c):02X}" for c in path)
    for method in ("GET", "HEAD"):
        response = await media_client.request(method, f"/media/{UPLOAD_ID}/{encoded}")
        assert response.status_code == 404, (method, path, response.status_code)
        assert b"SECRET-OUTSIDE" not in response.content


async def test_a_symlinked_upload_folder_is_not_followed(
    media_client: httpx.AsyncClient, media_settings: Settings, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "poster.jpg").write_bytes(b"SECRET-OUTSIDE")
    media_settings.media_dir.mkdir(parents=True, exist_ok=True)
    (media_settings.media_dir / "linked").symlink_to(elsewhere)
    response = await media_client.get("/media/linked/poster.jpg")
    assert response.status_code == 404


async def test_staging_and_old_trees_are_unreachable(
    media_client: httpx.AsyncClient, media_settings: Settings, tmp_path: Path
) -> None:
    publish(media_settings, tmp_path, {"poster.jpg": b"\xff\xd8jpeg"})
    for tree in (f".{UPLOAD_ID}.staging", f".{UPLOAD_ID}.old"):
        (media_settings.media_dir / tree).mkdir()
        (media_settings.media_dir / tree / "poster.jpg").write_bytes(b"SECRET")
        response = await media_client.get(f"/media/{tree}/poster.jpg")
        assert response.status_code == 404
