"""What the hostile samples (tests/hostile_*.py) are made with: the ffmpeg CLI and byte writers.

Every hostile sample is made on the spot with Python and the ffmpeg CLI, never
downloaded. Some lies (a PNG declaring a huge frame, a Matroska declaring hours)
are written byte by byte here because ffmpeg would refuse to write them.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]


def run_ffmpeg(args: list[str]) -> None:
    """Run the ffmpeg CLI; a failure raises with its stderr kept."""
    subprocess.run(args, check=True, capture_output=True)


def write_file(path: Path, data: bytes | str) -> Path:
    """Write one sample (its folder made) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


# -- PNG --------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(width: int, height: int, depth: int, colour: int, rows: int | None) -> bytes:
    """A PNG of zeros; `rows` cuts the image data short (None: all of it)."""
    channels = {0: 1, 2: 3}[colour]
    row = b"\0" + bytes((width * channels * depth + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


# -- Matroska, written by hand where ffmpeg would refuse to write the lie -----------------


def _ebml_size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(n)


def _ebml(element: int, value: int | float | str | bytes | list[bytes]) -> bytes:
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int):
        payload = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    elif isinstance(value, float):
        payload = struct.pack(">d", value)
    elif isinstance(value, str):
        payload = value.encode()
    elif isinstance(value, list):
        payload = b"".join(value)
    else:
        payload = value
    return (
        element.to_bytes((element.bit_length() + 7) // 8, "big")
        + _ebml_size(len(payload))
        + payload
    )


def matroska_bytes(
    tracks: list[list[bytes]],
    blocks: list[tuple[int, int, bytes]],
    duration_ms: float | None = None,
) -> bytes:
    """EBML header, Info, Tracks, one Cluster per (track number, time in ms, frame) block."""
    header = _ebml(
        0x1A45DFA3,
        [
            _ebml(0x4286, 1),  # EBMLVersion
            _ebml(0x42F7, 1),  # EBMLReadVersion
            _ebml(0x42F2, 4),  # EBMLMaxIDLength
            _ebml(0x42F3, 8),  # EBMLMaxSizeLength
            _ebml(0x4282, "matroska"),  # DocType
            _ebml(0x4287, 4),  # DocTypeVersion
            _ebml(0x4285, 2),  # DocTypeReadVersion
        ],
    )
    info = [_ebml(0x2AD7B1, 1_000_000), _ebml(0x4D80, "hostile"), _ebml(0x5741, "hostile")]
    if duration_ms is not None:
        info.append(_ebml(0x4489, float(duration_ms)))  # Duration, in TimecodeScale units
    entries = _ebml(0x1654AE6B, [_ebml(0xAE, track) for track in tracks])
    clusters = [
        _ebml(
            0x1F43B675,
            [
                _ebml(0xE7, at),  # Cluster Timecode
                _ebml(0xA3, _ebml_size(number) + struct.pack(">hB", 0, 0x80) + frame),
            ],
        )
        for number, at, frame in blocks
    ]
    segment = _ebml(0x18538067, [_ebml(0x1549A966, info), entries, *clusters])
    return header + segment


def video_track(number: int, codec: str, width: int, height: int) -> list[bytes]:
    """A Matroska TrackEntry of a video track that declares `width`×`height`."""
    return [
        _ebml(0xD7, number),  # TrackNumber
        _ebml(0x73C5, number),  # TrackUID
        _ebml(0x83, 1),  # TrackType: video
        _ebml(0x86, codec),  # CodecID
        _ebml(0xE0, [_ebml(0xB0, width), _ebml(0xBA, height)]),  # PixelWidth, PixelHeight
    ]


def pcm_track(number: int) -> list[bytes]:
    """A Matroska TrackEntry of an 8 kHz mono 16-bit PCM track."""
    return [
        _ebml(0xD7, number),
        _ebml(0x73C5, number),
        _ebml(0x83, 2),  # TrackType: audio
        _ebml(0x86, "A_PCM/INT/LIT"),
        _ebml(0xE1, [_ebml(0xB5, 8000.0), _ebml(0x9F, 1), _ebml(0x6264, 16)]),
    ]


def small_jpeg(side: int = 16) -> bytes:
    """A real black side×side JPEG: the frame the declared-size bombs lie about."""
    result = subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", f"color=c=black:s={side}x{side}", "-frames:v", "1"]
        + ["-c:v", "mjpeg", "-f", "mjpeg", "-"],
        check=True,
        capture_output=True,
    )
    return result.stdout
