"""The ffmpeg commands for H.264/AAC renditions, HLS, an MP4 and a poster (ffmpeg-python).

Video: the smallest rung in one ffmpeg run, the others together in a second
run from one decode (`processors.encoder_pieces` says why, `processors.pieces`
in which order), each rung written as HLS with a one-variant master that
`processors.hls_master` merges.
Keyframes are forced every SEGMENT_SECONDS and scene-cut keyframes are off, so
the segments of every rendition start at the same instants and a player can
switch between them at any segment boundary.
The MP4 is the top rendition's segments remuxed (no second encode); the poster
is one frame.

The output frame rate is capped (MEDIA_MAX_FPS: lecture content gains nothing
from 60 fps, and the ladder's cost grows with it), and lower still for slides
(`processors.content`: STATIC_FPS, with x264's still-image tuning, and every rung
at its quickest preset). A mono source keeps one audio channel. A still
picture with sound (a cover or a slide over narration: one video frame) gets a
video track made of that picture, at STILL_FPS, as long as the sound.

Audio only: AAC in an .m4a and an audio HLS, in one run.

Layout under `out_dir` (the published names):
    hls/master.m3u8, hls/v<i>/index.m3u8, hls/v<i>/seg_<n>.ts
    video.mp4 | audio.m4a, poster.jpg (video only)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from .content import STATIC_FPS
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
# ffmpeg's own AAC encoder. Its default coder (twoloop) took 18 CPU seconds for ten
# minutes of a lecture, on the way to playable; "fast" took 9, with no audible loss
# on speech at this bitrate.
AAC = {"c:a": "aac", "aac_coder": "fast", "ac": 2}
MASTER = "hls/master.m3u8"
# Each rung's own one-variant master, merged into MASTER (never published).
VARIANT = "variant.m3u8"
LADDER_PRESET = "veryfast"
# The first rung only has to play soon: the smallest, at a quicker preset.
PLAYABLE_PRESET = "superfast"
# Slides, every rung: their pictures are a keyframe every segment and then frames that
# say nothing moved. x264's quickest preset loses nothing visible on them (the same
# SSIM against the source as veryfast: it spends a few more bits, and slides need few)
# and costs the least CPU of all.
STATIC_PRESET = "ultrafast"


@dataclass(frozen=True)
class Rendition:
    width: int
    height: int
    video_bitrate: int  # 0 for audio only
    audio_bitrate: int

    @property
    def bitrate(self) -> int:
        return self.video_bitrate + self.audio_bitrate


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


class Deadline:
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


def _picture(tools: MediaTools, src: Any, info: MediaInfo, max_fps: float) -> tuple[Any, dict]:
    """The source's picture at the output frame rate, and the output options it needs."""
    video = src.video
    trim: dict[str, object] = {}
    if info.still and info.duration:
        # Repeat the one picture for as long as the sound lasts.
        video = video.filter("tpad", stop_mode="clone", stop_duration=info.duration)
        video = video.filter("fps", fps=STILL_FPS)
        trim["t"] = info.duration
    elif info.static and (info.fps is None or info.fps > min(max_fps, STATIC_FPS)):
        video = video.filter("fps", fps=min(max_fps, STATIC_FPS))
    elif info.fps is None or info.fps > max_fps:
        video = video.filter("fps", fps=max_fps)
    return video, trim


def _x264(preset: str, info: MediaInfo) -> dict[str, object]:
    """Encoder options shared by every rung: keyframes every SEGMENT_SECONDS on the
    same instants in every run, so rungs encoded apart still switch at any segment."""
    codecs: dict[str, object] = {
        "c:v": "libx264",
        "preset": preset,
        "pix_fmt": "yuv420p",
        "force_key_frames": f"expr:gte(t,n_forced*{SEGMENT_SECONDS})",
        "sc_threshold": 0,
    }
    if info.still or info.static:
        # A picture over narration, or slides: x264's tuning for still content.
        codecs["tune"] = "stillimage"
    if info.has_audio:
        codecs.update(_aac(info))
    return codecs


def _aac(info: MediaInfo) -> dict[str, object]:
    """AAC in stereo at most; a mono source stays mono (a lecture's one microphone):
    two copies of one voice cost the encoder twice the CPU and carry nothing more."""
    return {**AAC, "ac": 1 if info.audio_channels == 1 else 2}


def first_preset(info: MediaInfo) -> str:
    """x264's preset for the first rung, the one that makes the upload playable."""
    return STATIC_PRESET if info.static else PLAYABLE_PRESET


def ladder_preset(info: MediaInfo) -> str:
    """x264's preset for the rungs after the first."""
    return STATIC_PRESET if info.static else LADDER_PRESET


def _rate_options(rung: Rendition, stream: str) -> dict[str, object]:
    return {
        f"b:{stream}": rung.video_bitrate,
        f"maxrate:{stream}": int(rung.video_bitrate * 1.1),
        f"bufsize:{stream}": rung.video_bitrate * 2,
    }


def rung_dir(index: int) -> str:
    return f"hls/v{index}"


def rung_args(
    tools: MediaTools,
    out_dir: Path,
    info: MediaInfo,
    index: int,
    rung: Rendition,
    max_fps: float,
    preset: str = LADDER_PRESET,
    audio_from: Path | None = None,
) -> list[str]:
    """ffmpeg arguments for one rung as HLS in `hls/v<index>/` (see `ladder_args`)."""
    return ladder_args(tools, out_dir, info, {index: rung}, max_fps, preset, audio_from)


def ladder_args(
    tools: MediaTools,
    out_dir: Path,
    info: MediaInfo,
    rungs: dict[int, Rendition],
    max_fps: float,
    preset: str = LADDER_PRESET,
    audio_from: Path | None = None,
) -> list[str]:
    """ffmpeg arguments for the rungs `{index: rendition}` from one decode of the
    upload: each as HLS in `hls/v<index>/`, with a one-variant master (`variant.m3u8`)
    that says what the rung's stream is (`hls_master` merges them). Every output forces
    keyframes at the same instants, so these rungs and those of other runs line up.

    `audio_from`: a rung already made (its playlist), whose AAC is copied rather than
    encoded again: every rung carries the same audio, and encoding it costs about as
    much CPU as a small rung's pictures of slides."""
    # Every frame is decoded, slides' too: skipping those no other frame refers to
    # (`-skip_frame noref`) halves the decoder's work, but the fps filter then picks an
    # older frame wherever it would have picked a skipped one, and a pointer moving over
    # a slide loses positions it had.
    src = _source(tools)
    video, trim = _picture(tools, src, info, max_fps)
    # One decode, and the picture at the output rate, shared by every rung of the run.
    split = video.split() if len(rungs) > 1 else None
    audio = None
    if info.has_audio and audio_from is not None:
        audio = own_hls_input(audio_from).audio
    outputs = []
    for k, (index, rung) in enumerate(sorted(rungs.items())):
        picture = split[k] if split is not None else video
        streams = [picture.filter("scale", rung.width, rung.height)]
        options = _rate_options(rung, "v")
        codecs = _x264(preset, info)
        if audio is not None:
            streams.append(audio)
            codecs = {key: v for key, v in codecs.items() if key not in ("ac", "aac_coder")}
            codecs["c:a"] = "copy"
        elif info.has_audio:
            streams.append(src.audio)
            options["b:a"] = rung.audio_bitrate
        folder = out_dir / rung_dir(index)
        outputs.append(
            ffmpeg.output(
                *streams,
                str(folder / "index.m3u8"),
                **codecs,
                **options,
                **trim,
                f="hls",
                hls_time=SEGMENT_SECONDS,
                hls_playlist_type="vod",
                hls_flags="independent_segments",
                hls_segment_filename=str(folder / "seg_%05d.ts"),
                master_pl_name=VARIANT,
            )
        )
    return list(ffmpeg.merge_outputs(*outputs).get_args())


def audio_args(tools: MediaTools, out_dir: Path, info: MediaInfo) -> list[str]:
    """ffmpeg arguments for audio.m4a and an audio-only HLS under `out_dir`."""
    src = _source(tools)
    aac = {**_aac(info), "b:a": AUDIO_BITRATE}
    m4a = ffmpeg.output(src.audio, str(out_dir / "audio.m4a"), movflags="+faststart", **aac)
    hls = ffmpeg.output(
        src.audio, str(out_dir / "hls/v%v/index.m3u8"), **aac, **_hls_options(out_dir, "a:0")
    )
    return list(ffmpeg.merge_outputs(m4a, hls).get_args())


def own_hls_input(playlist_path: Path, **options: object) -> Any:
    """One of our own rung playlists read back: the one place HLS is allowed in."""
    return ffmpeg.input(
        f"file:{playlist_path}",
        protocol_whitelist="file",
        format_whitelist=",".join(OWN_HLS_DEMUXERS),
        # A still picture's segments are a keyframe and then near-empty frames: the
        # default look ends before a frame is decoded, and the video would be dropped
        # for want of a size. Segments are small; reading further costs little.
        analyzeduration=60_000_000,
        probesize=64 * 1024 * 1024,
        **options,
    )


def mp4_args(out_dir: Path) -> list[str]:
    """The MP4 download: the top rendition's segments, remuxed without re-encoding."""
    playlist = own_hls_input(out_dir / "hls/v0/index.m3u8")
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


def make_poster(
    tools: MediaTools,
    out_dir: Path,
    info: MediaInfo,
    top: Rendition,
    deadline: Deadline,
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
