"""Is this a lecture of still slides? Decided from packet sizes, before any decode.

Slides over narration change a few times a minute: between changes, every
coded frame of the upload is a few dozen bytes saying "nothing moved". Such
content gains nothing from 30 frames a second, and x264 has a tuning for it;
the ladder then costs a fraction of what moving pictures cost. The test reads
the sizes of the first SAMPLE_SECONDS of video packets (a demux, no decode:
milliseconds) and calls the video static when the median frame between
keyframes carries less than STATIC_BITS_PER_PIXEL. Natural video is tens of
times above it, a synthetic test pattern several times; slides tens of times
below.
"""

from __future__ import annotations

import statistics

from .media_tools import MediaTools
from .probe import PROBE_TIMEOUT, MediaInfo

SAMPLE_SECONDS = 60
STATIC_BITS_PER_PIXEL = 0.002
# Frames a second for static content: a pointer or an annotation still moves visibly.
STATIC_FPS = 10
MIN_PACKETS = 20


def looks_static(tools: MediaTools, info: MediaInfo) -> bool:
    if info.kind != "video" or info.still or not info.width or not info.height:
        return False
    result = tools.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals",
         f"%+{SAMPLE_SECONDS}", "-show_entries", "packet=size,flags", "-of", "csv=p=0",
         *tools.input()],
        duration=None,
        timeout=PROBE_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        return False
    sizes = []
    for line in result.stdout.decode(errors="replace").splitlines():
        size, _, flags = line.partition(",")
        if size.isdigit() and "K" not in flags:
            sizes.append(int(size))
    if len(sizes) < MIN_PACKETS:
        return False
    bits_per_pixel = statistics.median(sizes) * 8 / (info.width * info.height)
    return bits_per_pixel < STATIC_BITS_PER_PIXEL
