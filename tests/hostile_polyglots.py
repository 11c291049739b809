"""Hostile polyglots: valid media whose bytes are also an HTML/SVG document.

Each generator writes one file an uploader could send and returns its path;
the first line of its docstring says what the attack is.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hostile_writers import FFMPEG, run_ffmpeg, write_file

# The markup every sample here carries (and the SVG disguise too): a browser that runs it
# on our origin is stored XSS.
SCRIPT = "<script>alert(document.domain)</script>"


def _gif_with_comment(gif: bytes, comment: bytes) -> bytes:
    """Insert a GIF Comment Extension after the header (and global colour table)."""
    flags = gif[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = b"".join(
        bytes([len(comment[i : i + 255])]) + comment[i : i + 255]
        for i in range(0, len(comment), 255)
    )
    return gif[:at] + b"\x21\xfe" + blocks + b"\0" + gif[at:]


def make_gif_html_polyglot(path: Path) -> Path:
    """An animated GIF that is also an HTML page: a comment block holds `<html><script>`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path.with_name(path.name + ".plain.gif")
    run_ffmpeg([*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=96x64:rate=5:duration=1", str(plain)])
    html = f"<html><body><h1>polyglot</h1>{SCRIPT}</body></html>".encode()
    data = _gif_with_comment(plain.read_bytes(), html)
    plain.unlink()
    return write_file(path, data)


def make_mp4_html_polyglot(path: Path) -> Path:
    """A playable MP4 that is also an HTML/SVG document: a top-level `free` box of markup."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=1"]
        + [
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-metadata",
            f"comment={SCRIPT}",
            "-f",
            "mp4",
            str(path),
        ]
    )
    markup = (
        f'<html><body>{SCRIPT}<svg xmlns="http://www.w3.org/2000/svg" '
        'onload="alert(document.domain)"/></body></html>'
    ).encode()
    box = struct.pack(">I", 8 + len(markup)) + b"free" + markup
    with open(path, "ab") as f:
        f.write(box)
    return path


def make_wav_script_tags(path: Path, seconds: float = 1) -> Path:
    """A valid WAV whose INFO tags (title, artist, comment) are `<script>` markup."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        [*FFMPEG, "-f", "lavfi", "-i", f"sine=frequency=500:duration={seconds}"]
        + [
            "-metadata",
            f"title={SCRIPT}",
            "-metadata",
            f"artist={SCRIPT}",
            "-metadata",
            f"comment={SCRIPT}",
            "-c:a",
            "pcm_s16le",
            "-f",
            "wav",
            str(path),
        ]
    )
    return path
