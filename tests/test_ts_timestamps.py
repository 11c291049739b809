"""The first PTS of an HLS segment, read in Python instead of by ffprobe.

Checked against ffprobe on segments real ffmpeg makes, and fed bytes that are
not MPEG-TS or that lie about their own lengths: the answer is None, never an
exception or a read past the packet.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from processors.ts_timestamps import PACKET, first_pts


def hls_segments(tmp_path: Path, *args: str) -> list[Path]:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=duration=4:size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=duration=4",
         *args, "-g", "25", "-f", "hls", "-hls_time", "1", str(tmp_path / "index.m3u8")],
        check=True,
    )  # fmt: skip
    return sorted(tmp_path.glob("*.ts"))


def ffprobe_start(segment: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "csv=p=0",
         str(segment)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return round(float(out) * 90_000)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac"], id="b-frames"),
        pytest.param(["-c:v", "libx264", "-preset", "ultrafast", "-an"], id="video-only"),
        pytest.param(["-vn", "-c:a", "aac"], id="audio-only"),
    ],
)
def test_first_pts_is_what_ffprobe_reads(tmp_path: Path, args: list[str]) -> None:
    segments = hls_segments(tmp_path, *args)
    assert len(segments) >= 2
    for segment in segments:
        assert first_pts(segment) == ffprobe_start(segment)


def packet(payload: bytes, *, start: bool = True, adaptation: bytes | None = None) -> bytes:
    flags = 0x40 if start else 0x00
    control = 0x30 if adaptation is not None else 0x10
    head = bytes([0x47, flags, 0x00, control])
    body = (bytes([len(adaptation)]) + adaptation if adaptation is not None else b"") + payload
    return (head + body + b"\xff" * PACKET)[:PACKET]


def pes(pts: int, stream_id: int = 0xE0) -> bytes:
    encoded = bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            ((pts >> 14) & 0xFE) | 1,
            (pts >> 7) & 0xFF,
            ((pts << 1) & 0xFE) | 1,
        ]
    )
    return b"\x00\x00\x01" + bytes([stream_id]) + b"\x00\x00\x80\x80\x05" + encoded


def test_the_lowest_pts_of_the_first_packets_across_streams(tmp_path: Path) -> None:
    ts = tmp_path / "s.ts"
    ts.write_bytes(
        packet(pes(200_000))
        + packet(b"\x00" * 10, start=False)
        + packet(pes(126_000, stream_id=0xC0), adaptation=b"\x00" * 7)
        + packet(pes(2**33 - 1))
    )
    assert first_pts(ts) == 126_000


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html><script>alert(1)</script></html>" * 20, id="not-ts"),
        pytest.param(b"\x47" + b"\x00" * 100, id="shorter-than-a-packet"),
        pytest.param(packet(pes(90_000)) + b"\x00" * PACKET, id="loses-sync"),
        pytest.param(packet(pes(90_000), adaptation=b"\x00" * 200), id="adaptation-past-the-end"),
        pytest.param(
            packet(pes(90_000), adaptation=b"\x00" * 175), id="pes-header-cut-by-the-packet-end"
        ),
        pytest.param(packet(pes(90_000, stream_id=0xBD)), id="not-audio-or-video"),
        pytest.param(packet(b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + b"\x00" * 5), id="no-pts"),
    ],
)
def test_what_is_not_a_readable_segment_has_no_start(tmp_path: Path, content: bytes) -> None:
    ts = tmp_path / "s.ts"
    ts.write_bytes(content)
    assert first_pts(ts) is None


def test_a_missing_segment_has_no_start(tmp_path: Path) -> None:
    assert first_pts(tmp_path / "gone.ts") is None
