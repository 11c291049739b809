"""The original is private, and no upload is ever served as a page.

The stored-XSS case end to end: a real WAV uploaded as `talk.html` is
processed for real (ffmpeg, Whisper) and published; nothing reachable under
/media or /files then answers as text/html, and the original's only way out
is GET /files/{id}: its owner or the API key, as an attachment of bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import API_KEY
from media_helpers import make_audio
from pipeline_helpers import tus_metadata, tus_upload
from redis import Redis

from processors.pipeline import PipelineContext, process_upload
from processors.publish import make_publisher
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore
from upload_service.http.downloads import attachment

pytestmark = pytest.mark.anyio

SPEECH = "Uploaded media is hostile. Media is private by default."


def urls_in(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith(("/", "http")):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from urls_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from urls_in(item)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_wav_uploaded_as_talk_html_is_never_served_as_html(
    tmp_path: Path, settings: Settings, client: httpx.AsyncClient, make_token: Callable
) -> None:
    wav = make_audio(tmp_path / "speech.wav", speech=SPEECH)
    hostile = tmp_path / "talk.html"
    shutil.copyfile(wav, hostile)
    # Whatever the file is, the browser must never take it for a page: prove the
    # name alone would have made it one (StaticFiles typed by extension).
    assert hostile.read_bytes()[:4] == b"RIFF"
    owner = make_token("user-1")
    upload_id = await tus_upload(client, owner, hostile)

    ctx = PipelineContext(
        settings=settings,
        status=StatusStore(settings.status_dir, Redis.from_url(settings.redis_url)),
        jobs=MemoryJobQueue(),
        publisher=make_publisher(settings),
    )
    processed = process_upload(upload_id, ctx)
    assert processed is not None and processed["state"] == "ready", processed

    status = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))
    record = status.json()
    assert record["state"] == "ready"
    outputs = record["outputs"]
    assert outputs["captions"] and outputs["transcript"], outputs  # every kind of output
    assert outputs["original"] == f"/files/{upload_id}"

    # Nothing of the upload in the media dir under any name: byte-compare every file.
    folder = settings.media_dir / upload_id
    published = sorted(p for p in folder.rglob("*") if p.is_file())
    assert published
    uploaded = hostile.read_bytes()
    assert all(p.read_bytes() != uploaded for p in published)
    assert not [p for p in published if p.name.startswith("original")]

    # Every URL of the record, and every file in the folder, through the app.
    query = urlsplit(outputs["hls"]).query  # one query serves every file of the upload
    urls = [u for u in urls_in(outputs) if u != outputs["original"]]
    urls += [
        f"/media/{upload_id}/{p.relative_to(folder)}" + (f"?{query}" if query else "")
        for p in published
    ]
    signed = f"?{query}" if query else ""
    legacy = [f"/media/{upload_id}/original.html{signed}", f"/media/{upload_id}/original{signed}"]
    for url in [*urls, *legacy]:
        for method in ("GET", "HEAD"):
            response = await client.request(method, url)
            content_type = response.headers.get("content-type", "")
            assert "html" not in content_type, (url, content_type)
            if response.status_code == 200:
                assert response.headers["x-content-type-options"] == "nosniff", url
                assert response.headers["content-security-policy"].startswith("sandbox"), url
    for url in legacy:  # what uploads published before this change hold: never served
        assert (await client.get(url)).status_code == 404

    # The original: only its owner and the backend, always an attachment of bytes.
    url = outputs["original"]
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=bearer(make_token("user-2")))).status_code == 404
    for secret in (owner, API_KEY):
        for method in ("GET", "HEAD"):
            response = await client.request(method, url, headers=bearer(secret))
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream"
            assert response.headers["content-disposition"] == (
                "attachment; filename=\"talk.html\"; filename*=UTF-8''talk.html"
            )
            assert response.headers["content-security-policy"] == "sandbox"
            assert response.headers["x-content-type-options"] == "nosniff"
            if method == "GET":
                assert response.content == uploaded
    ranged = await client.get(url, headers={**bearer(owner), "Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"RIFF"
    assert ranged.headers["content-disposition"].startswith("attachment;")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("talk.html", "attachment; filename=\"talk.html\"; filename*=UTF-8''talk.html"),
        (
            '"><img src=x onerror=alert(1)>.html',
            'attachment; filename="___img src_x onerror_alert_1__.html"; '
            "filename*=UTF-8''%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.html",
        ),
        # A "/" ends a path part: only the last one is a file name.
        (
            "<script>x</script>.html",
            "attachment; filename=\"script_.html\"; filename*=UTF-8''script%3E.html",
        ),
        ("../../etc/passwd", "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"),
        ("C:\\Users\\x\\clip.mp4", "attachment; filename=\"clip.mp4\"; filename*=UTF-8''clip.mp4"),
        (
            "a\r\nSet-Cookie: x=1.mp4",
            'attachment; filename="aSet-Cookie_ x_1.mp4"; '
            "filename*=UTF-8''aSet-Cookie%3A%20x%3D1.mp4",
        ),
        (
            "résumé.mp4",
            "attachment; filename=\"r_sum_.mp4\"; filename*=UTF-8''r%C3%A9sum%C3%A9.mp4",
        ),
        (None, "attachment; filename=\"upload-abc\"; filename*=UTF-8''upload-abc"),
        ("..", "attachment; filename=\"upload-abc\"; filename*=UTF-8''upload-abc"),
    ],
)
def test_attachment_names_are_safe(filename: str | None, expected: str) -> None:
    assert attachment(filename, "abc") == expected


async def test_every_download_is_an_attachment_even_without_a_name(
    client: httpx.AsyncClient, make_token: Callable
) -> None:
    owner = make_token("user-1")
    created = await client.post(
        "/files/",
        content=b"<html><script>alert(1)</script></html>",
        headers={
            **bearer(owner),
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "38",
            "Upload-Metadata": tus_metadata(filetype="text/html"),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert created.status_code == 201, created.text
    url = urlsplit(created.headers["location"]).path
    upload_id = url.rsplit("/", 1)[-1]
    response = await client.get(url, headers=bearer(owner))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="upload-{upload_id}"'
    )
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"
