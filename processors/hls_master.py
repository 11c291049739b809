"""The HLS master playlist, from the rungs finished so far.

Each rung is an output of its own (`transcode.ladder_args`), and ffmpeg writes, beside
its media playlist, a one-variant master (`variant.m3u8`) with what it measured:
BANDWIDTH, RESOLUTION, CODECS. The master lists the finished rungs' variants,
best first, and is replaced whole (a temp name, then a rename), so a player
always reads a valid master: one rung once the media is playable, every rung
at the end. Captions join last (`hls_subtitles`), into the master as it is then.
"""

from __future__ import annotations

import os
from pathlib import Path

from .transcode import VARIANT

HEADER = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"


def variant_lines(hls_dir: Path, index: int) -> list[str]:
    """The rung's `#EXT-X-STREAM-INF` line and its URI, relative to `hls_dir`."""
    text = (hls_dir / f"v{index}" / VARIANT).read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("#EXT-X-STREAM-INF:"):
            return [line, f"v{index}/{lines[i + 1]}"]
    raise ValueError(f"no variant in {hls_dir / f'v{index}' / VARIANT}")


def master_text(hls_dir: Path, indexes: list[int]) -> str:
    body = [line for index in sorted(indexes) for line in variant_lines(hls_dir, index)]
    return HEADER + "\n".join(body) + "\n"


def write_master(hls_dir: Path, indexes: list[int]) -> Path:
    """`hls_dir/master.m3u8` listing the rungs `indexes` (0 is the best), replaced whole."""
    master = hls_dir / "master.m3u8"
    tmp = hls_dir / ".master.m3u8.tmp"
    tmp.write_text(master_text(hls_dir, indexes))
    os.replace(tmp, master)
    return master
