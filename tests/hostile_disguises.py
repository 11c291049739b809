"""Hostile disguises: pictures and text that some demuxer turns into "video".

Each generator writes one file an uploader could send and returns its path;
the first line of its docstring says what the attack is.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hostile_polyglots import SCRIPT
from hostile_writers import FFMPEG, png_bytes, run_ffmpeg, write_file


def make_ppm(path: Path, side: int = 64) -> Path:
    """A PPM picture: ffprobe calls it video (`ppm_pipe`) and the pipeline publishes a ladder."""
    return write_file(path, f"P6\n{side} {side}\n255\n".encode() + bytes(side * side * 3))


def make_png(path: Path, side: int = 64) -> Path:
    """A PNG picture uploaded as video (`png_pipe`)."""
    return write_file(path, png_bytes(side, side, depth=8, colour=2, rows=None))


def make_jpeg(path: Path, side: int = 64) -> Path:
    """A JPEG picture uploaded as video (`jpeg_pipe`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        [*FFMPEG, "-f", "lavfi", "-i", f"testsrc=size={side}x{side}", "-frames:v", "1"]
        + ["-f", "mjpeg", str(path)]
    )
    return path


def make_svg(path: Path) -> Path:
    """An SVG with a script: `svg_pipe` makes it "video"; published as-is it is stored XSS."""
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" '
        'onload="alert(document.domain)">\n'
        '  <rect width="64" height="64" fill="#c00"/>\n'
        f"  {SCRIPT}\n"
        "</svg>\n"
    )
    return write_file(path, svg)


def make_xbin(path: Path, text: str = "root:x:0:0:root:/root:/bin/bash") -> Path:
    """XBIN text-mode art ("XBIN\\x1a" magic): the bintext decoder renders its characters as video.

    The 2017 exploit concatenated an XBIN header with a local file so that the
    file's text came out as frames; any text behind this header is "video".
    """
    columns, rows = 80, 25
    cells = text.encode().ljust(columns * rows, b" ")[: columns * rows]
    screen = b"".join(bytes([c, 0x07]) for c in cells)
    return write_file(path, b"XBIN\x1a" + struct.pack("<HHBB", columns, rows, 16, 0) + screen)


def make_sauce_text(path: Path, text: str = "root:x:0:0:root:/root:/bin/bash\n" * 40) -> Path:
    """Text with a SAUCE trailer: the `bin` demuxer probes it by content and renders the text."""
    data = text.encode()
    sauce = b"SAUCE00" + b"hostile".ljust(35) + b"".ljust(20) + b"".ljust(20) + b"20240101"
    sauce += struct.pack("<IBBHHHHBB", len(data), 5, 80, 0, 0, 0, 0, 0, 0) + b"\0" * 22
    assert len(sauce) == 128
    return write_file(path, data + b"\x1a" + sauce)


def make_ansi_text(path: Path) -> Path:
    """ANSI escape text (the `tty` demuxer's food): content probing takes it for AMR-WB audio.

    `tty` itself wants a .txt/.ans/... name, which a stored upload never has;
    what remains is that plain text probes as *some* media format at all.
    """
    lines = "".join(f"\x1b[3{i % 8}mHELLO SECRET \x1b[0m\r\n" for i in range(200))
    return write_file(path, lines)


def make_gxf(path: Path) -> Path:
    """A GXF (SMPTE 360M broadcast) file: an exotic demuxer with a CVE history, not user media."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc=size=720x576:rate=25:duration=0.2"]
        + ["-c:v", "mpeg2video", "-q:v", "20", "-f", "gxf", str(path)]
    )
    return path
