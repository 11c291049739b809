"""What the upload is: ffprobe for the container, a short decode for the damage.

ffprobe alone trusts the container's index, so a faststart MP4 cut in half
still reports its full length; decoding a few seconds at the start and at the
end catches that truncation without decoding the whole file.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .failures import CorruptMedia, UnsupportedMedia

PROBE_TIMEOUT = 60.0
DECODE_SECONDS = 3
# Demuxers that ffprobe reports for still images: a picture is not media here.
IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe"}
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

    def public(self) -> dict[str, Any]:
        """The status record's `media` object."""
        data = asdict(self)
        return {k: data[k] for k in ("kind", "duration", "width", "height")}


def ffprobe(path: Path) -> dict[str, Any] | None:
    """ffprobe's JSON, or None when ffprobe cannot open the file at all."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        timeout=PROBE_TIMEOUT,
    )
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


def describe(data: dict[str, Any]) -> MediaInfo | None:
    """MediaInfo from ffprobe's JSON; None when it holds neither video nor audio."""
    fmt = data.get("format", {})
    format_name = str(fmt.get("format_name", ""))
    if format_name in IMAGE_FORMATS:
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
    duration = _float(fmt.get("duration")) or max((d for d in durations if d), default=None)
    if video:
        width, height = int(video[0].get("width") or 0), int(video[0].get("height") or 0)
        if not width or not height:
            return None
        rotation = _rotation(video[0])
        if rotation in (90, 270):  # phones record sideways and say so in metadata
            width, height = height, width
        return MediaInfo("video", duration, width, height, bool(audio), format_name)
    return MediaInfo("audio", duration, None, None, True, format_name)


def _rotation(stream: dict[str, Any]) -> int:
    raw = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            raw = side["rotation"]
    try:
        return abs(int(float(raw or 0))) % 360
    except ValueError:
        return 0


def _decode_errors(path: Path, seek: list[str]) -> str:
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", *seek, "-i", str(path)]
        + ["-t", str(DECODE_SECONDS), "-f", "null", "-"],
        capture_output=True,
        timeout=PROBE_TIMEOUT,
    )
    errors = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0 and not errors:
        errors = f"ffmpeg exited with status {result.returncode}"
    return errors


def check_decodes(path: Path, info: MediaInfo) -> None:
    """Decode the first and the last seconds; any error means damaged media."""
    seeks: list[list[str]] = [[]]
    if info.duration and info.duration > 2 * DECODE_SECONDS:
        seeks.append(["-sseof", f"-{DECODE_SECONDS}"])
    for seek in seeks:
        errors = _decode_errors(path, seek)
        if errors:
            where = "end" if seek else "start"
            first = errors.splitlines()[0]
            raise CorruptMedia(f"the file cannot be decoded (at its {where}): {first}")


def probe(path: Path, kinds: list[str] | None = None) -> MediaInfo:
    """Describe `path` or raise UnsupportedMedia / CorruptMedia."""
    data = ffprobe(path)
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
    check_decodes(path, info)
    return info
