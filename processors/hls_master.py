"""The HLS master playlist, from the rungs finished so far.

Each rung is an output of its own (`transcode.ladder_args`), and ffmpeg writes, beside
its media playlist, a one-variant master (`variant.m3u8`) with RESOLUTION and CODECS.
Its BANDWIDTH is the bitrates ffmpeg was asked for, without a copied audio stream's:
the master says what the segments measure instead, as HLS defines it (BANDWIDTH the
peak segment bitrate, AVERAGE-BANDWIDTH over the whole rung), so that players pick
rungs by what they cost to fetch. The master lists the finished rungs' variants,
best first, and is replaced whole (a temp name, then a rename), so a player
always reads a valid master: one rung once the media is playable, every rung
at the end. Captions join last (`hls_subtitles`), into the master as it is then.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .transcode import VARIANT

HEADER = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
_BANDWIDTHS = re.compile(r",?\b(?:AVERAGE-)?BANDWIDTH=\d+")


def variant_lines(hls_dir: Path, index: int) -> list[str]:
    """The rung's `#EXT-X-STREAM-INF` line, with the bandwidths its segments measure,
    and its URI, relative to `hls_dir`."""
    folder = hls_dir / f"v{index}"
    text = (folder / VARIANT).read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines[:-1]):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = lines[i + 1]
            peak, average = measured_bandwidth(folder / uri)
            attributes = _BANDWIDTHS.sub("", line.split(":", 1)[1]).lstrip(",")
            stream_inf = f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average}"
            return [f"{stream_inf},{attributes}" if attributes else stream_inf, f"v{index}/{uri}"]
    raise ValueError(f"no variant in {folder / VARIANT}")


def measured_bandwidth(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second of a media playlist's segments, from their
    sizes on disk and their #EXTINF durations."""
    peak = 0.0
    total_bits = 0
    total_seconds = 0.0
    duration: float | None = None
    for line in playlist.read_text().splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            bits = (playlist.parent / line).stat().st_size * 8
            if duration > 0:
                peak = max(peak, bits / duration)
            total_bits += bits
            total_seconds += duration
            duration = None
    if total_seconds <= 0:
        raise ValueError(f"no segments in {playlist}")
    return math.ceil(peak), math.ceil(total_bits / total_seconds)


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
