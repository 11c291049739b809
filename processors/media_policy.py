"""What ffmpeg may open when it reads an upload, and how much one file may cost.

An upload is whatever bytes its sender chose. ffmpeg, left to itself, probes
those bytes for any of its hundreds of formats, and several of them are
references rather than media: an HLS playlist or an ffconcat script names
other files (another user's upload, anything on the host) or URLs, and ffmpeg
follows them. So every run that reads an upload names the one local file
(`file:` protocol only) and lets ffmpeg recognise it only as one of a short
list of real media containers. Nothing else is ever opened, whatever the bytes
say: a playlist or a script is refused by name before it is parsed.

The limits bound what a file that *is* media may cost: a 750 KB file can
hold one 16000x16000 frame, and a 5 MB file can declare an hour of 1080p60.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from upload_service.core.settings import Settings

# Demuxers of real media containers (ffmpeg's names). Deliberately absent:
# hls, concat, image2 and the *_pipe image readers, tty, bin, gxf, mxf,
# webm_dash_manifest, data, lavfi, subtitles: formats that reference other
# files or are not audio/video at all.
MEDIA_DEMUXERS = (
    "mov",  # mp4, m4a, mov, 3gp
    "matroska",  # mkv, webm
    "avi",
    "asf",  # wmv, wma
    "flv",
    "mpegts",
    "mpeg",  # MPEG program stream: .mpg, .vob
    "gif",
    "wav",
    "w64",
    "aiff",
    "caf",
    "mp3",
    "aac",
    "flac",
    "ogg",  # vorbis, opus, theora
)
# Our own intermediate outputs (the HLS ladder read back to make the MP4),
# never an upload.
OWN_HLS_DEMUXERS = ("hls", "mpegts")


@dataclass(frozen=True)
class MediaLimits:
    max_pixels: int = 4096 * 4096
    max_duration: float = 4 * 3600.0
    max_streams: int = 16
    max_fps: float = 30.0
    # CPU seconds a media tool may use per second of media (and at least cpu_min).
    cpu_per_second: float = 3.0
    cpu_min: float = 300.0
    memory_bytes: int = 4 * 1024**3

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaLimits:
        return cls(
            max_pixels=settings.media_max_pixels,
            max_duration=settings.media_max_duration,
            max_streams=settings.media_max_streams,
            max_fps=settings.media_max_fps,
            cpu_per_second=settings.media_cpu_per_second,
            cpu_min=settings.media_cpu_min,
            memory_bytes=settings.media_memory_limit,
        )

    def cpu_seconds(self, duration: float | None) -> int:
        """The CPU-time limit of one tool run over media of this length."""
        return int(max(self.cpu_min, self.cpu_per_second * (duration or 0)))


def input_args(
    path: Path, limits: MediaLimits, demuxers: tuple[str, ...] = MEDIA_DEMUXERS
) -> list[str]:
    """ffmpeg/ffprobe input options for one local file, read as media and nothing else.

    `-max_pixels` reaches the decoders too, so a frame larger than its
    container declared is refused when decoded, not allocated.
    """
    return [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ",".join(demuxers),
        "-max_pixels",
        str(limits.max_pixels),
        "-i",
        # "file:" so that no name, whatever it looks like, is read as a protocol.
        f"file:{path}",
    ]
