"""Hostile uploads: refused, with nothing read, fetched or published.

Whoever holds an upload token chooses the bytes that ffprobe and ffmpeg open.
Each file here (tests/hostile_*.py, made on the spot) is an attack written
up against transcoding services. What must hold for every one of them:

- `probe()` refuses it with the error code given here;
- the whole pipeline, run in-process as in test_pipeline.py, ends `failed`
  with that code, never `ready`, and publishes nothing;
- nothing connects out: the loopback listener the file points at (TCP and UDP
  on one port) counts zero connections and zero datagrams;
- the private file a manifest names (a host file, another user's upload)
  shows up in no output: neither its marker bytes nor a frame of its colour.

On the unrestricted processing path (ffprobe/ffmpeg opening whatever they
are given) several of these fail because the attack works; the branch that
brings the protocol/format allowlists, the sandbox and the limits makes them
pass. Tests that pass on the unrestricted path too say what they guard.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hostile_bombs import (
    make_declared_jpeg_mkv,
    make_declared_png_mkv,
    make_gif_screen_bomb,
    make_long_declared_mkv,
    make_long_declared_mp3,
    make_long_frame_mp4,
    make_many_streams_mkv,
    make_png_frame_mkv,
)
from hostile_disguises import (
    make_ansi_text,
    make_gxf,
    make_jpeg,
    make_png,
    make_ppm,
    make_sauce_text,
    make_svg,
    make_xbin,
)
from hostile_references import (
    SECRET_MARKER,
    make_avi_gab2_playlist,
    make_dash_manifest,
    make_ffconcat,
    make_hls_master,
    make_hls_playlist,
    make_sdp,
    make_secret_media,
)
from media_helpers import make_video
from pipeline_helpers import make_ctx, tus_upload
from security_helpers import Listener, Target, published, secret_traces

from processors.failures import MediaError
from processors.pipeline import process_upload
from processors.probe import probe
from upload_service.core.settings import Settings
from upload_service.core.status import Record

pytestmark = pytest.mark.one_path

UNSUPPORTED = "unsupported_media"
TOO_LARGE = "frame_too_large"
TOO_LONG = "media_too_long"
TOO_MANY = "too_many_streams"


# -- what the hostile files point at ------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def target(tmp_path: Path, listener: Listener) -> Target:
    host = tmp_path / "host-private"
    secret_ts = make_secret_media(host / "secret.ts")
    secret_mp4 = make_secret_media(host / "secret.mp4")
    variant = make_hls_playlist(host / "variant.m3u8", str(secret_ts))
    return Target(listener, secret_ts, secret_mp4, variant)


Make = Callable[[Path, Target], Path]


# Manifests that make a demuxer open other files or URLs. Every one must be refused
# as unsupported media: none of these formats is something a user uploads as a video.
REFERENCES: dict[str, Make] = {
    # -- Succeed on the unrestricted path (the secret is published, or ffprobe reads it) --
    # Another user's upload, by its id: the concat demuxer's safe mode allows bare names.
    "ffconcat-neighbour-upload": lambda p, t: make_ffconcat(p, t.neighbour),
    # A host file with a media extension: the HLS demuxer opens it.
    "hls-absolute-path": lambda p, t: make_hls_playlist(p, str(t.secret_ts)),
    "hls-file-url": lambda p, t: make_hls_playlist(p, f"file://{t.secret_ts}"),
    "hls-byterange": lambda p, t: make_hls_playlist(p, str(t.secret_ts), byterange="9400@0"),
    "hls-ext-x-map-local": lambda p, t: make_hls_playlist(
        p, str(t.secret_mp4), map_uri=str(t.secret_mp4)
    ),
    "hls-master-to-host-playlist": lambda p, t: make_hls_master(p, str(t.variant)),
    # ffprobe reads the host playlist and the secret; only the decode check's
    # error on the http audio rendition stops it (as corrupt_media).
    "hls-master-http-audio": lambda p, t: make_hls_master(
        p, str(t.variant), audio=t.url("http", "a.m3u8")
    ),
    # ffprobe reads the host file (it reports the secret's 208x112); the decode
    # check's H.264 errors stop it (as corrupt_media).
    "dash-local-file": lambda p, t: make_dash_manifest(p, str(t.secret_mp4)),
    # -- Guards: refused by ffmpeg 5.1 itself on the unrestricted path ---------------------
    # The concat demuxer's safe mode refuses absolute paths, URLs and protocol prefixes.
    "ffconcat-absolute-path": lambda p, t: make_ffconcat(p, str(t.secret_ts)),
    "ffconcat-http": lambda p, t: make_ffconcat(p, t.url("http")),
    "ffconcat-subfile": lambda p, t: make_ffconcat(p, f"subfile,,start,0,end,0,,:{t.neighbour}"),
    # A playlist read through file: passes on the protocol whitelist "file,crypto,data":
    # http/https/tcp/udp/rtp and the concat/subfile protocols are refused, nothing connects.
    "hls-concat-protocol": lambda p, t: make_hls_playlist(p, f"concat:{t.secret_ts}|{t.secret_ts}"),
    "hls-subfile-protocol": lambda p, t: make_hls_playlist(
        p, f"subfile,,start,0,end,0,,:{t.secret_ts}"
    ),
    "hls-http-segment": lambda p, t: make_hls_playlist(p, t.url("http")),
    "hls-https-segment": lambda p, t: make_hls_playlist(p, t.url("https")),
    "hls-tcp-segment": lambda p, t: make_hls_playlist(p, t.url("tcp")),
    "hls-udp-segment": lambda p, t: make_hls_playlist(p, t.url("udp")),
    "hls-crypto-http-segment": lambda p, t: make_hls_playlist(p, t.url("crypto+http")),
    "hls-ext-x-key-http": lambda p, t: make_hls_playlist(
        p, str(t.secret_ts), key_uri=t.url("http", "key.bin")
    ),
    "hls-ext-x-map-http": lambda p, t: make_hls_playlist(
        p, str(t.secret_mp4), map_uri=t.url("http", "init.mp4")
    ),
    "hls-master-http-variant": lambda p, t: make_hls_master(p, t.url("http", "v.m3u8")),
    "dash-http": lambda p, t: make_dash_manifest(p, t.url("http", "x.mp4")),
    "sdp-rtp": lambda p, t: make_sdp(p, "127.0.0.1", t.listener.port),
    # ffmpeg >= 3.3.2 opens only SRT/ASS inside GAB2, so the AVI holds no media.
    "avi-gab2-hls": lambda p, t: make_avi_gab2_playlist(
        p,
        f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.5,\n{t.secret_ts}\n"
        f"#EXTINF:2.5,\n{t.url('http')}\n#EXT-X-ENDLIST\n",
    ),
}

# Files that are no user video at all, and bombs: (make, code).
OTHERS: dict[str, tuple[Callable[[Path], Path], str]] = {
    # -- Accepted by probe() on the unrestricted path ---------------------------------------
    "ppm-image": (make_ppm, UNSUPPORTED),
    "svg-image": (make_svg, UNSUPPORTED),
    "gxf-container": (make_gxf, UNSUPPORTED),
    "png-frame-16000-mkv": (make_png_frame_mkv, TOO_LARGE),
    "gif-16000-screen": (make_gif_screen_bomb, TOO_LARGE),
    # One picture and no sound is not media at all: refused before its length matters.
    "mp4-one-frame-10h": (make_long_frame_mp4, UNSUPPORTED),
    "mkv-declares-10h": (make_long_declared_mkv, TOO_LONG),
    "mp3-xing-declares-10h": (make_long_declared_mp3, TOO_LONG),
    "mkv-1000-streams": (make_many_streams_mkv, TOO_MANY),
    # -- Refused on the unrestricted path, by accident and as corrupt_media -----------------
    # The bintext demuxer ends each read in an I/O error, which the decode check catches.
    "xbin-text-art": (make_xbin, UNSUPPORTED),
    "sauce-text-bin": (make_sauce_text, UNSUPPORTED),
    # Probed as AMR-WB audio; its frames fail to decode.
    "ansi-text": (make_ansi_text, UNSUPPORTED),
    # The decoder allocates the declared frame (800 MB), then finds the data missing.
    "png-declared-16000-mkv": (make_declared_png_mkv, TOO_LARGE),
    "jpeg-declared-16000-mkv": (make_declared_jpeg_mkv, TOO_LARGE),
    # -- Guards: refused today by name (the image2 pipe demuxers) ---------------------------
    "png-image": (make_png, UNSUPPORTED),
    "jpeg-image": (make_jpeg, UNSUPPORTED),
}


# -- helpers --------------------------------------------------------------------------------


def refusal(path: Path) -> str:
    """probe()'s error code for `path`; fails the test when probe() accepts it."""
    try:
        info = probe(path)
    except MediaError as exc:
        return exc.code
    pytest.fail(f"probe() accepted the hostile file as {info}")


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    # No transcription; a hung ffmpeg is stopped well inside the test timeout.
    return settings.with_changes(transcribe=False, transcode_timeout_min=60.0)


def assert_refused(
    record: Record | None, settings: Settings, upload_id: str, code: str, listener: Listener
) -> None:
    """Nothing connected out, nothing of the secret anywhere, `failed` with `code`, no outputs."""
    assert listener.settle() == 0, (
        f"ffmpeg reached out: {listener.connections} TCP connection(s), "
        f"{listener.datagrams} UDP datagram(s) to 127.0.0.1:{listener.port}"
    )
    leaks = secret_traces(settings.media_dir)
    assert not leaks, f"the private file was published: {leaks}"
    assert SECRET_MARKER not in json.dumps(record)
    assert record is not None
    state, error = record["state"], record.get("error") or {}
    assert (state, error.get("code")) == ("failed", code), (
        f"ended {state} ({error}); published {published(settings, upload_id)}"
    )
    assert record["outputs"] == {}
    assert not (settings.media_dir / upload_id).exists()


# -- probe() -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCES))
def test_probe_refuses_references(
    name: str, tmp_path: Path, target: Target, listener: Listener
) -> None:
    uploads = tmp_path / "uploads"
    shutil.copyfile(target.secret_ts, _mkdir(uploads) / target.neighbour)
    hostile = REFERENCES[name](uploads / "AttackerUpload_abcdef0123", target)
    code = refusal(hostile)
    assert listener.settle() == 0, f"probe() reached out to 127.0.0.1:{listener.port}"
    assert code == UNSUPPORTED


@pytest.mark.parametrize("name", list(OTHERS))
def test_probe_refuses_disguises_and_bombs(name: str, tmp_path: Path) -> None:
    make, code = OTHERS[name]
    hostile = make(_mkdir(tmp_path / "uploads") / "AttackerUpload_abcdef0123")
    assert refusal(hostile) == code


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the whole pipeline --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(REFERENCES))
async def test_pipeline_refuses_references(
    name: str,
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    target: Target,
    listener: Listener,
) -> None:
    # The victim's upload: the secret, stored beside the attacker's in the uploads dir.
    target.neighbour = await tus_upload(client, make_token("victim"), target.secret_ts)
    hostile = REFERENCES[name](tmp_path / "attack" / "lesson.mp4", target)
    upload_id = await tus_upload(client, make_token("attacker"), hostile)
    ctx = make_ctx(quiet_settings)
    record = process_upload(upload_id, ctx)
    assert_refused(record, quiet_settings, upload_id, UNSUPPORTED, listener)
    # A refusal is final: the same message again does nothing.
    assert process_upload(upload_id, ctx) == record


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("make", "code"),
    [(make_ppm, UNSUPPORTED), (make_svg, UNSUPPORTED), (make_gxf, UNSUPPORTED)],
    ids=["ppm-image", "svg-image", "gxf-container"],
)
async def test_pipeline_refuses_disguised_pictures(
    make: Callable[[Path], Path],
    code: str,
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    listener: Listener,
) -> None:
    upload_id = await tus_upload(client, make_token(), make(tmp_path / "lesson.mp4"))
    record = process_upload(upload_id, make_ctx(quiet_settings))
    assert_refused(record, quiet_settings, upload_id, code, listener)


# -- the corpus itself ---------------------------------------------------------------------


def test_secret_detector_finds_the_secret(tmp_path: Path) -> None:
    """The leak check is real: it spots the secret's frames and marker, and not a test pattern."""
    found = tmp_path / "found"
    make_secret_media(found / "seg.ts")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(found / "seg.ts"), "-frames:v", "1"]
        + [str(found / "poster.jpg")],
        check=True,
    )
    assert len(secret_traces(found)) == 3  # seg.ts: marker and colour; poster.jpg: colour
    clean = tmp_path / "clean"
    make_video(clean / "video.mp4", 1, "160x90")
    assert secret_traces(clean) == []


def test_listener_counts_tcp_and_udp() -> None:
    """The no-connection check is real: the listener counts what reaches it."""
    server = Listener()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"x", ("127.0.0.1", server.port))
        assert server.settle() == 2
        assert (server.connections, server.datagrams) == (1, 1)
    finally:
        server.close()
