"""Media that real users send: every shape must still probe and publish.

The security limits (format allowlist, sandbox, pixel/duration/stream caps)
must not cost these: a lecture recorded as one slide over narration, phone
video in portrait or rotated by metadata, the odd frame rates of film, PAL
and 60 Hz cameras, variable frame rate screen recordings, animated GIF,
WebM from a browser, MKV, MOV, and audio in every common container.

For each: `probe()` describes it (kind, display size, audio, duration), and
the whole pipeline, in-process as in test_pipeline.py, ends `ready` with a
poster for video and renditions that keep the picture's orientation.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from media_helpers import (
    make_animated_gif,
    make_audio,
    make_rotated_video,
    make_still_with_narration,
    make_vfr_video,
    make_video,
    make_webm,
)
from pipeline_helpers import make_ctx, tus_upload

from processors.pipeline import process_upload
from processors.probe import probe
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path


@dataclass(frozen=True)
class Legit:
    make: Callable[[Path], Path]
    kind: str  # "video" | "audio"
    size: tuple[int, int] | None  # as displayed (width, height); None for audio
    has_audio: bool
    seconds: float


CASES: dict[str, Legit] = {
    # One frame at 0 s and 20 s of narration: the poster cannot be taken 2 s in.
    "still-image-narration-mp4": Legit(
        lambda d: make_still_with_narration(d / "lesson.mp4", 20), "video", (640, 360), True, 20
    ),
    "audio-m4a": Legit(lambda d: make_audio(d / "talk.m4a", 3), "audio", None, True, 3),
    "audio-mp3": Legit(lambda d: make_audio(d / "talk.mp3", 3), "audio", None, True, 3),
    "audio-wav": Legit(lambda d: make_audio(d / "talk.wav", 3), "audio", None, True, 3),
    "audio-ogg-vorbis": Legit(lambda d: make_audio(d / "talk.ogg", 3), "audio", None, True, 3),
    "audio-flac": Legit(lambda d: make_audio(d / "talk.flac", 3), "audio", None, True, 3),
    "rate-23.976": Legit(
        lambda d: make_video(d / "film.mp4", 3, "640x360", rate="24000/1001"),
        "video",
        (640, 360),
        True,
        3,
    ),
    "rate-12.5": Legit(
        lambda d: make_video(d / "pal.mp4", 3, "640x360", rate="25/2"),
        "video",
        (640, 360),
        True,
        3,
    ),
    "rate-59.94": Legit(
        lambda d: make_video(d / "ntsc.mp4", 3, "640x360", rate="60000/1001"),
        "video",
        (640, 360),
        True,
        3,
    ),
    "portrait-1080x1920": Legit(
        lambda d: make_video(d / "phone.mp4", 2, "1080x1920"), "video", (1080, 1920), True, 2
    ),
    # Coded 640x360, displayed 360x640 through the display matrix.
    "rotated-90-display-matrix": Legit(
        lambda d: make_rotated_video(d / "phone.mp4", 90), "video", (360, 640), True, 2
    ),
    "variable-frame-rate": Legit(
        lambda d: make_vfr_video(d / "screen.mp4"), "video", (320, 240), True, 4
    ),
    "animated-gif": Legit(
        lambda d: make_animated_gif(d / "loop.gif"), "video", (160, 120), False, 2
    ),
    "webm-vp9-opus": Legit(lambda d: make_webm(d / "rec.webm"), "video", (320, 180), True, 2),
    "mkv-h264-aac": Legit(
        lambda d: make_video(d / "clip.mkv", 2, "320x180"), "video", (320, 180), True, 2
    ),
    "mov-h264-aac": Legit(
        lambda d: make_video(d / "clip.mov", 2, "320x180"), "video", (320, 180), True, 2
    ),
}


def _dims(path: Path, fmt: str) -> tuple[int, int]:
    """Width and height of the first picture of one of our outputs (demuxer forced).

    A segment of a still picture is a keyframe and then near-empty frames, and
    ffprobe's default look at a 4 s segment ends before a frame is decoded:
    it is told to read the whole segment.
    """
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-analyzeduration", "30M", "-probesize", "30M"]
        + ["-f", fmt, "-select_streams", "v:0"]
        + ["-show_entries", "stream=width,height", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    stream = json.loads(result.stdout)["streams"][0]
    return int(stream["width"]), int(stream["height"])


def _portrait(size: tuple[int, int]) -> bool:
    return size[1] > size[0]


@pytest.mark.parametrize("name", list(CASES))
def test_probe_describes(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    info = probe(case.make(tmp_path))
    assert info.kind == case.kind
    assert info.has_audio == case.has_audio
    if case.size is None:
        assert (info.width, info.height) == (None, None)
    else:
        assert (info.width, info.height) == case.size
    assert info.duration is not None and abs(info.duration - case.seconds) < 0.5


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    return settings.with_changes(transcribe=False)


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(CASES))
async def test_pipeline_publishes(
    name: str,
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
) -> None:
    case = CASES[name]
    upload_id = await tus_upload(client, make_token(), case.make(tmp_path))
    record = process_upload(upload_id, make_ctx(quiet_settings))
    assert record is not None
    assert (record["state"], record.get("error")) == ("ready", None)
    media: dict[str, Any] = record["media"]
    outputs: dict[str, Any] = record["outputs"]
    base = quiet_settings.media_dir / upload_id
    assert media["kind"] == case.kind
    assert media["duration"] is not None and abs(media["duration"] - case.seconds) < 0.5
    assert (base / "hls/master.m3u8").is_file()
    assert outputs["renditions"]

    if case.size is None:
        assert (media["width"], media["height"]) == (None, None)
        assert outputs["audio"].endswith("/audio.m4a") and "poster" not in outputs
        return
    assert (media["width"], media["height"]) == case.size
    assert outputs["poster"].endswith("/poster.jpg") and outputs["mp4"].endswith("/video.mp4")
    top = outputs["renditions"][0]
    # Portrait stays portrait, landscape stays landscape: in the ladder, in the
    # pictures each rendition really holds, and in the poster.
    for rung in outputs["renditions"]:
        assert _portrait((rung["width"], rung["height"])) == _portrait(case.size)
    for i, rung in enumerate(outputs["renditions"]):
        segment = base / f"hls/v{i}/seg_00000.ts"
        assert _dims(segment, "mpegts") == (rung["width"], rung["height"])
    assert _dims(base / "poster.jpg", "jpeg_pipe") == (top["width"], top["height"])
    # No rendition plays faster than MEDIA_MAX_FPS: a 59.94 fps source costs a 30 fps ladder.
    assert 0 < _fps(base / "video.mp4") <= quiet_settings.media_max_fps


def _fps(path: Path) -> float:
    """The average frame rate of a file's first video stream."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0"]
        + ["-show_entries", "stream=avg_frame_rate", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    numerator, _, denominator = result.stdout.strip().partition("/")
    return float(numerator) / float(denominator or 1)
