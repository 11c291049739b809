"""Polyglots: valid media that is also a document (HTML, SVG, script tags).

Media may be accepted; nothing published from it, and not the original either, may be
served as a page a browser runs on our origin; media tags never reach the status record
or the events a backend may show in its own pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hostile_disguises import make_svg
from hostile_polyglots import (
    SCRIPT,
    make_gif_html_polyglot,
    make_mp4_html_polyglot,
    make_wav_script_tags,
)
from pipeline_helpers import make_ctx, tus_upload
from security_helpers import published

from processors.pipeline import process_upload
from upload_service.core.media_signing import media_signer
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    # No transcription; a hung ffmpeg is stopped well inside the test timeout.
    return settings.with_changes(transcribe=False, transcode_timeout_min=60.0)


def signed_query(settings: Settings, upload_id: str) -> str:
    """What a reader of the status API gets appended to the upload's media URLs."""
    signer = media_signer(settings)
    assert signer is not None  # MEDIA_ACCESS=signed is the default
    return signer.query(upload_id)


# Types a browser runs as a document (script included) when it is served from our origin.
ACTIVE_TYPES = {
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/javascript",
    "application/javascript",
}

POLYGLOTS: dict[str, Callable[[Path], Path]] = {
    "gif-html-as-html": lambda d: make_gif_html_polyglot(d / "cat.html"),
    "mp4-html-as-html": lambda d: make_mp4_html_polyglot(d / "clip.html"),
    "mp4-html-as-xhtml": lambda d: make_mp4_html_polyglot(d / "clip.xhtml"),
    "wav-script-tags-as-svg": lambda d: make_wav_script_tags(d / "talk.svg"),
    "svg-as-svg": lambda d: make_svg(d / "logo.svg"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(POLYGLOTS))
async def test_polyglot_is_never_served_as_a_document(
    name: str,
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
) -> None:
    """Valid media may be accepted; what is published must not be a page on our origin."""
    upload_id = await tus_upload(client, make_token(), POLYGLOTS[name](tmp_path))
    record = process_upload(upload_id, make_ctx(quiet_settings))
    assert record is not None and record["state"] in {"ready", "failed"}
    if record["state"] == "failed":
        assert not (quiet_settings.media_dir / upload_id).exists()
        return
    served = {}
    query = signed_query(quiet_settings, upload_id)
    for file_name in published(quiet_settings, upload_id):
        response = await client.get(f"/media/{upload_id}/{file_name}?{query}")
        assert response.status_code == 200, file_name
        served[file_name] = response.headers.get("content-type", "").split(";")[0].strip()
    # The original itself, downloaded by its owner: a file to save, never a page.
    original = await client.get(
        f"/files/{upload_id}", headers={"Authorization": f"Bearer {make_token()}"}
    )
    assert original.status_code == 200
    assert original.headers["content-disposition"].startswith("attachment")
    assert original.headers["content-security-policy"].startswith("sandbox")
    served["(original)"] = original.headers["content-type"].split(";")[0].strip()
    active = {n: t for n, t in served.items() if t in ACTIVE_TYPES}
    assert not active, f"published as a document a browser runs: {active}"


@pytest.mark.anyio
async def test_published_media_is_served_nosniff(
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
) -> None:
    """Every published file says `nosniff`: no browser second-guesses a polyglot's type."""
    clip = make_mp4_html_polyglot(tmp_path / "clip.mp4")
    upload_id = await tus_upload(client, make_token(), clip)
    record = process_upload(upload_id, make_ctx(quiet_settings))
    assert record is not None and record["state"] == "ready"
    missing = []
    query = signed_query(quiet_settings, upload_id)
    for name in published(quiet_settings, upload_id):
        response = await client.get(f"/media/{upload_id}/{name}?{query}")
        assert response.status_code == 200, name
        if response.headers.get("x-content-type-options", "").lower() != "nosniff":
            missing.append(name)
    assert not missing, f"served without X-Content-Type-Options: nosniff: {missing}"


@pytest.mark.anyio
async def test_script_tags_stay_out_of_the_record_and_events(
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
) -> None:
    """Guard (passes today): media tags never reach the status record or the webhook events.

    A WAV whose title/artist/comment are `<script>` is fine audio; a backend
    that showed the record's fields in a page would run what the tags say.
    """
    upload_id = await tus_upload(client, make_token(), make_wav_script_tags(tmp_path / "talk.wav"))
    settings = quiet_settings.with_changes(webhook_url="http://127.0.0.1:9/hooks")
    ctx = make_ctx(settings)
    record = process_upload(upload_id, ctx)
    assert record is not None and record["state"] == "ready"
    assert record["media"]["kind"] == "audio"
    assert ctx.jobs.sent  # type: ignore[attr-defined]
    for text in (json.dumps(record), json.dumps(ctx.jobs.sent, default=str)):  # type: ignore[attr-defined]
        assert "<script" not in text and SCRIPT not in text
