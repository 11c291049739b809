"""What the upload is: ffprobe for the container, a short decode for the damage.

Both run restricted and contained (`media_tools`): a file is media only when
ffprobe, allowed to read nothing but one local file as one of the real media
containers, finds audio or video in it, within the MEDIA_* limits.

ffprobe alone trusts the container's index, so a faststart MP4 cut in half
still reports its full length; decoding a few seconds at the start and at the
end catches that truncation without decoding the whole file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .failures import CorruptMedia, LimitExceeded, UnsupportedMedia
from .media_policy import MEDIA_DEMUXERS, MediaLimits
from .media_tools import MediaTools

# Hostile files must be refused within seconds; a real one probes in well under one.
PROBE_TIMEOUT = 30.0
DECODE_SECONDS = 3
# What the decoders say when a frame is over -max_pixels (a pixel flood).
_PIXEL_FLOOD = "exceeds specified max pixel count"
# Leading bytes of containers we would accept: when ffprobe cannot read such a
# file it is damaged media, not some other kind of file.
MEDIA_MAGIC = (
    (4, b"ftyp"),  # MP4 / MOV / M4A
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # WAV / AVI
    (0, b"OggS"),
    (0, b"fLaC"),
    (0, b"ID3"),  # MP3 with tags
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
)


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # "video" | "audio"
    duration: float | None
    width: int | None
    height: int | None
    has_audio: bool
    format_name: str = ""
    fps: float | None = None  # the video's average frame rate
    # One picture (a slide, a cover) with sound: its video track is built from it.
    still: bool = False
    # Pictures that hardly ever change (slides): `processors.content` decides.
    static: bool = False
    # The first audio stream's channels (None: not said): a mono voice stays mono.
    audio_channels: int | None = None

    def public(self) -> dict[str, Any]:
        """The status record's `media` object."""
        data = asdict(self)
        return {k: data[k] for k in ("kind", "duration", "width", "height")}


def ffprobe(tools: MediaTools) -> dict[str, Any] | None:
    """ffprobe's JSON, or None when ffprobe cannot open the file as media at all."""
    result = tools.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", *tools.input()],
        duration=None,
        timeout=PROBE_TIMEOUT,
    )
    if _PIXEL_FLOOD in result.stderr.decode(errors="replace"):
        raise _frame_too_large(tools.limits)
    if result.returncode != 0:
        return None
    try:
        data: dict[str, Any] = json.loads(result.stdout or b"{}")
    except ValueError:
        return None
    return data if data.get("streams") else None


def _looks_like_media(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(head[at : at + len(magic)] == magic for at, magic in MEDIA_MAGIC) or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MPEG audio frame sync
    )


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _frame_too_large(limits: MediaLimits) -> LimitExceeded:
    return LimitExceeded(
        "frame_too_large",
        f"a frame of the video is larger than {limits.max_pixels} pixels (MEDIA_MAX_PIXELS)",
    )


def _allowed_container(format_name: str) -> bool:
    # ffprobe names a demuxer by its aliases, e.g. "mov,mp4,m4a,3gp,3g2,mj2".
    return any(name in MEDIA_DEMUXERS for name in format_name.split(","))


def _fraction(value: Any) -> float | None:
    numerator, _, denominator = str(value or "").partition("/")
    try:
        rate = float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _is_still(stream: dict[str, Any], duration: float | None) -> bool:
    """One picture: a single frame, or a video track far shorter than the media."""
    frames = str(stream.get("nb_frames") or "")
    if frames.isdigit() and int(frames) <= 1:
        return True
    own = _float(stream.get("duration"))
    return own is not None and duration is not None and own < 0.5 and duration >= 2.0


def describe(data: dict[str, Any]) -> MediaInfo | None:
    """MediaInfo from ffprobe's JSON; None when it holds neither video nor audio."""
    fmt = data.get("format", {})
    format_name = str(fmt.get("format_name", ""))
    if not _allowed_container(format_name):
        return None
    streams = data.get("streams", [])
    # Cover art in an MP3 or M4A is a video stream with this disposition.
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not video and not audio:
        return None
    durations = [_float(s.get("duration")) for s in (*video, *audio)]
    channels = _int(audio[0].get("channels")) if audio else None
    duration = _float(fmt.get("duration")) or max((d for d in durations if d), default=None)
    if video:
        width, height = int(video[0].get("width") or 0), int(video[0].get("height") or 0)
        if not width or not height:
            return None
        rotation = _rotation(video[0])
        if rotation in (90, 270):  # phones record sideways and say so in metadata
            width, height = height, width
        still = _is_still(video[0], duration)
        if still and not audio:
            return None  # a picture alone is not media
        fps = _fraction(video[0].get("avg_frame_rate")) or _fraction(video[0].get("r_frame_rate"))
        return MediaInfo(
            "video", duration, width, height, bool(audio), format_name, fps=fps, still=still,
            audio_channels=channels,
        )  # fmt: skip
    return MediaInfo("audio", duration, None, None, True, format_name, audio_channels=channels)


def check_limits(data: dict[str, Any], info: MediaInfo, limits: MediaLimits) -> None:
    """Refuse what would cost more than the MEDIA_* limits allow, before any transcode."""
    count = len(data.get("streams", []))
    if count > limits.max_streams:
        raise LimitExceeded(
            "too_many_streams",
            f"the file has {count} streams; at most {limits.max_streams} are accepted "
            "(MEDIA_MAX_STREAMS)",
        )
    for stream in data.get("streams", []):
        pixels = int(stream.get("width") or 0) * int(stream.get("height") or 0)
        if pixels > limits.max_pixels:
            raise _frame_too_large(limits)
    if info.duration is not None and info.duration > limits.max_duration:
        raise LimitExceeded(
            "media_too_long",
            f"the media lasts {info.duration:.0f} s; at most {limits.max_duration:.0f} s are "
            "accepted (MEDIA_MAX_DURATION)",
        )


def _rotation(stream: dict[str, Any]) -> int:
    raw = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            raw = side["rotation"]
    try:
        return abs(int(float(raw or 0))) % 360
    except ValueError:
        return 0


def _decode_errors(tools: MediaTools, seek: list[str]) -> str:
    result = tools.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", *seek, *tools.input()]
        + ["-t", str(DECODE_SECONDS), "-f", "null", "-"],
        duration=DECODE_SECONDS,
        timeout=PROBE_TIMEOUT,
    )
    errors = result.stderr.decode(errors="replace").strip()
    if _PIXEL_FLOOD in errors:
        raise _frame_too_large(tools.limits)
    if result.returncode != 0 and not errors:
        errors = f"ffmpeg exited with status {result.returncode}"
    return errors


def check_decodes(tools: MediaTools, info: MediaInfo) -> None:
    """Decode the first and the last seconds; any error means damaged media."""
    seeks: list[list[str]] = [[]]
    if info.duration and info.duration > 2 * DECODE_SECONDS:
        seeks.append(["-sseof", f"-{DECODE_SECONDS}"])
    for seek in seeks:
        errors = _decode_errors(tools, seek)
        if errors:
            where = "end" if seek else "start"
            first = errors.splitlines()[0]
            raise CorruptMedia(f"the file cannot be decoded (at its {where}): {first}")


def probe(path: Path, kinds: list[str] | None = None, tools: MediaTools | None = None) -> MediaInfo:
    """Describe `path` or raise a MediaError (UnsupportedMedia, CorruptMedia, LimitExceeded)."""
    tools = tools or MediaTools(Path(path).resolve())
    data = ffprobe(tools)
    if data is None:
        if path.stat().st_size == 0:
            raise UnsupportedMedia("the file is empty")
        if _looks_like_media(path):
            raise CorruptMedia("the file looks like a media container but cannot be read")
        raise UnsupportedMedia("the file is not audio or video that we can read")
    info = describe(data)
    if info is None:
        raise UnsupportedMedia(
            f"the file ({data.get('format', {}).get('format_long_name') or 'unknown format'}) "
            "holds no audio or video"
        )
    if kinds and info.kind not in kinds:
        allowed = " or ".join(kinds)
        raise UnsupportedMedia(f"this upload accepts {allowed} only, and the file is {info.kind}")
    check_limits(data, info, tools.limits)
    check_decodes(tools, info)
    return info
