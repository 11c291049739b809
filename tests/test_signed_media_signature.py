"""MEDIA_ACCESS=signed (the default): the signature, its key, and what it is put on.

The expiring HMAC of an upload on its own, without the app: its expiry window,
what it covers, where its key comes from, the settings, and which URLs of a
status record and which URIs of a playlist get it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import TOKEN_SECRET
from hls_helpers import MASTER
from signed_media_helpers import HOUR

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


# -- what a status record gets signed -----------------------------------------------------


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
