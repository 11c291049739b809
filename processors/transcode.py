"""H.264/AAC renditions, HLS, an MP4 and a poster, with ffmpeg-python.

Video: one ffmpeg run splits the decoded picture into every rendition of the
ladder and writes them all as HLS with a master playlist (decoding once is
most of the saving). Keyframes are forced every SEGMENT_SECONDS and scene-cut
keyframes are off, so the segments of every rendition start at the same
instants and a player can switch between them at any segment boundary. The
MP4 is the top rendition's segments remuxed (no second encode); the poster is
one frame.

The output frame rate is capped (MEDIA_MAX_FPS: lecture content gains nothing
from 60 fps, and the ladder's cost grows with it). A still picture with sound
(a cover or a slide over narration: one video frame) gets a video track made
of that picture, at STILL_FPS, as long as the sound.

Audio only: AAC in an .m4a and an audio HLS, in one run.

Layout under `out_dir` (the published names):
    hls/master.m3u8, hls/v<i>/index.m3u8, hls/v<i>/seg_<n>.ts
    video.mp4 | audio.m4a, poster.jpg (video only)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg

from .ffmpeg_run import run_ffmpeg
from .media_policy import OWN_HLS_DEMUXERS
from .media_tools import MediaTools
from .probe import MediaInfo

SEGMENT_SECONDS = 4
# A still picture changes never: a few frames a second play as well as thirty.
STILL_FPS = 5
# (short side, H.264 bitrate): common VOD rungs; the source picks the ones it can fill.
LADDER = ((1080, 5_000_000), (720, 2_800_000), (480, 1_400_000), (360, 800_000))
AUDIO_BITRATE = 128_000
MASTER = "hls/master.m3u8"


@dataclass(frozen=True)
class Rendition:
    width: int
    height: int
    video_bitrate: int  # 0 for audio only
    audio_bitrate: int

    @property
    def bitrate(self) -> int:
        return self.video_bitrate + self.audio_bitrate


@dataclass
class TranscodeResult:
    hls: str
    renditions: list[tuple[Rendition, str]]  # (rendition, its playlist's relative name)
    download: str  # video.mp4 or audio.m4a
    poster: str | None
    files: list[str] = field(default_factory=list)  # every file written, relative


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def choose_ladder(width: int, height: int, has_audio: bool = True) -> list[Rendition]:
    """The rungs the source can fill, never upscaled, at least one.

    Rungs apply to the short side, so a portrait phone video gets the same
    quality steps as a landscape one.
    """
    audio = AUDIO_BITRATE if has_audio else 0
    short = min(width, height)
    rungs = [(side, rate) for side, rate in LADDER if side <= short]
    if not rungs:  # smaller than the lowest rung: keep its size, scale the bitrate down
        low_side, low_rate = LADDER[-1]
        rungs = [(short, max(150_000, int(low_rate * (short / low_side) ** 2)))]
    ladder = []
    for side, rate in rungs:
        scale = side / short
        ladder.append(Rendition(_even(width * scale), _even(height * scale), rate, audio))
    return ladder


ProgressFn = Callable[[float], None]


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(1.0, self.end - time.monotonic())


def _hls_options(out_dir: Path, var_stream_map: str) -> dict[str, object]:
    return {
        "f": "hls",
        "hls_time": SEGMENT_SECONDS,
        "hls_playlist_type": "vod",
        "hls_flags": "independent_segments",
        "hls_segment_filename": str(out_dir / "hls/v%v/seg_%05d.ts"),
        "master_pl_name": "master.m3u8",
        "var_stream_map": var_stream_map,
    }


def _source(tools: MediaTools, **options: object) -> Any:
    return ffmpeg.input(tools.input_name, **tools.input_options(), **options)


def video_hls_args(
    tools: MediaTools, out_dir: Path, info: MediaInfo, ladder: list[Rendition], max_fps: float
) -> list[str]:
    """ffmpeg arguments for the whole ladder as HLS under `out_dir`."""
    src = _source(tools)
    video = src.video
    trim: dict[str, object] = {}
    if info.still and info.duration:
        # Repeat the one picture for as long as the sound lasts.
        video = video.filter("tpad", stop_mode="clone", stop_duration=info.duration)
        video = video.filter("fps", fps=STILL_FPS)
        trim["t"] = info.duration
    elif info.fps is None or info.fps > max_fps:
        video = video.filter("fps", fps=max_fps)
    pictures = video.filter_multi_output("split", len(ladder))
    streams = []
    options: dict[str, object] = {}
    groups = []
    for i, rung in enumerate(ladder):
        streams.append(pictures.stream(i).filter("scale", rung.width, rung.height))
        options[f"b:v:{i}"] = rung.video_bitrate
        options[f"maxrate:v:{i}"] = int(rung.video_bitrate * 1.1)
        options[f"bufsize:v:{i}"] = rung.video_bitrate * 2
        if info.has_audio:
            streams.append(src.audio)
            options[f"b:a:{i}"] = rung.audio_bitrate
            groups.append(f"v:{i},a:{i}")
        else:
            groups.append(f"v:{i}")
    codecs: dict[str, object] = {
        "c:v": "libx264",
        "preset": "veryfast",
        "pix_fmt": "yuv420p",
        "force_key_frames": f"expr:gte(t,n_forced*{SEGMENT_SECONDS})",
        "sc_threshold": 0,
    }
    if info.has_audio:
        codecs.update({"c:a": "aac", "ac": 2})
    output = ffmpeg.output(
        *streams,
        str(out_dir / "hls/v%v/index.m3u8"),
        **codecs,
        **options,
        **trim,
        **_hls_options(out_dir, " ".join(groups)),
    )
    return list(output.get_args())


def audio_args(tools: MediaTools, out_dir: Path) -> list[str]:
    """ffmpeg arguments for audio.m4a and an audio-only HLS under `out_dir`."""
    src = _source(tools)
    aac = {"c:a": "aac", "b:a": AUDIO_BITRATE, "ac": 2}
    m4a = ffmpeg.output(src.audio, str(out_dir / "audio.m4a"), movflags="+faststart", **aac)
    hls = ffmpeg.output(
        src.audio, str(out_dir / "hls/v%v/index.m3u8"), **aac, **_hls_options(out_dir, "a:0")
    )
    return list(ffmpeg.merge_outputs(m4a, hls).get_args())


def mp4_args(out_dir: Path) -> list[str]:
    """The MP4 download: the top rendition's segments, remuxed without re-encoding."""
    # Our own playlist and segments, read back: the one place HLS is allowed in.
    playlist = ffmpeg.input(
        f"file:{out_dir / 'hls/v0/index.m3u8'}",
        protocol_whitelist="file",
        format_whitelist=",".join(OWN_HLS_DEMUXERS),
        # A still picture's segments are a keyframe and then near-empty frames: the
        # default look ends before a frame is decoded, and the video would be dropped
        # for want of a size. Segments are small; reading further costs little.
        analyzeduration=60_000_000,
        probesize=64 * 1024 * 1024,
    )
    return list(
        playlist.output(
            str(out_dir / "video.mp4"), c="copy", map="0", movflags="+faststart"
        ).get_args()
    )


def poster_args(
    tools: MediaTools, out_dir: Path, info: MediaInfo, top: Rendition, at: float
) -> list[str]:
    """One frame at `at` seconds, at the top rendition's size."""
    poster = (
        _source(tools, ss=at)
        .video.filter("scale", top.width, top.height)
        .output(str(out_dir / "poster.jpg"), vframes=1, **{"q:v": 3})
    )
    return list(poster.get_args())


def poster_seconds(info: MediaInfo) -> float:
    """A little way in (the first frame is often black); the picture itself for a still."""
    return 0.0 if info.still else min(5.0, (info.duration or 0) * 0.1)


def transcode(
    tools: MediaTools,
    out_dir: Path,
    info: MediaInfo,
    *,
    timeout: float,
    log_path: Path,
    on_progress: ProgressFn,
) -> TranscodeResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hls").mkdir(exist_ok=True)
    deadline = _Deadline(timeout)
    if info.kind == "audio":
        run_ffmpeg(
            audio_args(tools, out_dir),
            tools=tools,
            duration=info.duration,
            timeout=deadline.left(),
            log_path=log_path,
            on_progress=on_progress,
        )
        rendition = Rendition(0, 0, 0, AUDIO_BITRATE)
        return _result(out_dir, [(rendition, "hls/v0/index.m3u8")], "audio.m4a", None)

    assert info.width and info.height
    ladder = choose_ladder(info.width, info.height, info.has_audio)
    run_ffmpeg(
        video_hls_args(tools, out_dir, info, ladder, tools.limits.max_fps),
        tools=tools,
        duration=info.duration,
        timeout=deadline.left(),
        log_path=log_path,
        on_progress=lambda p: on_progress(p * 0.95),
    )
    run_ffmpeg(
        mp4_args(out_dir), tools=tools, duration=None, timeout=deadline.left(), log_path=log_path
    )
    poster = make_poster(tools, out_dir, info, ladder[0], deadline, log_path)
    on_progress(100.0)
    renditions = [(rung, f"hls/v{i}/index.m3u8") for i, rung in enumerate(ladder)]
    return _result(out_dir, renditions, "video.mp4", poster)


def make_poster(
    tools: MediaTools,
    out_dir: Path,
    info: MediaInfo,
    top: Rendition,
    deadline: _Deadline,
    log_path: Path,
) -> str | None:
    """poster.jpg, or None: a seek can land past the last frame (a video track
    shorter than its media), and then the first frame will do."""
    for at in dict.fromkeys((poster_seconds(info), 0.0)):
        run_ffmpeg(
            poster_args(tools, out_dir, info, top, at),
            tools=tools,
            duration=None,
            timeout=deadline.left(),
            log_path=log_path,
        )
        if (out_dir / "poster.jpg").is_file():
            return "poster.jpg"
    return None


def _result(
    out_dir: Path, renditions: list[tuple[Rendition, str]], download: str, poster: str | None
) -> TranscodeResult:
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    return TranscodeResult(MASTER, renditions, download, poster, files)
