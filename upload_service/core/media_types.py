"""The Content-Type of every published file, from a fixed map of what the service writes.

Never from the file's bytes, the uploader's `filetype` or the system's mimetypes
database: whatever is not in this map is served as `application/octet-stream`,
so no published name can ever come back as HTML, SVG or script. The B2
publisher stores objects under the same types.
"""

from __future__ import annotations

from pathlib import PurePosixPath

OCTET_STREAM = "application/octet-stream"
PLAYLIST = "application/vnd.apple.mpegurl"

TYPES = {
    ".m3u8": PLAYLIST,
    ".ts": "video/mp2t",
    ".m4s": "video/mp4",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def media_type_for(name: str) -> str:
    return TYPES.get(PurePosixPath(name).suffix.lower(), OCTET_STREAM)


def is_playlist(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() == ".m3u8"


# The storyboard's WebVTT names the sprite sheet, so it is rewritten as it is served.
STORYBOARD = "storyboard.vtt"


def is_storyboard(name: str) -> bool:
    return name == STORYBOARD
