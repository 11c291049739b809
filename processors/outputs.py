"""The status record's `outputs`: what is published so far, as the contract's fields.

Written at `playable` (the smallest rung, the master, the poster), again as the
storyboard and each rung join, and at `ready` (everything).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .transcode import MASTER, Rendition
from .transcribe import TranscriptionResult


@dataclass
class Made:
    """What a job has published: names to URLs, and which names are what."""

    urls: dict[str, str] = field(default_factory=dict)
    rungs: dict[int, tuple[Rendition, str]] = field(default_factory=dict)  # 0: the best
    poster: str | None = None
    download: str | None = None  # video.mp4 or audio.m4a
    storyboard: str | None = None
    captions: TranscriptionResult | None = None


def build_outputs(made: Made, original_url: str) -> dict[str, Any]:
    urls = made.urls
    outputs: dict[str, Any] = {"original": original_url}
    if MASTER in urls:
        outputs["hls"] = urls[MASTER]
    outputs["renditions"] = [
        {
            "height": rung.height or None,
            "width": rung.width or None,
            "bitrate": rung.bitrate,
            "url": urls[name],
        }
        for _, (rung, name) in sorted(made.rungs.items())
        if name in urls
    ]
    if made.poster and made.poster in urls:
        outputs["poster"] = urls[made.poster]
    if made.download and made.download in urls:
        outputs["mp4" if made.download.endswith(".mp4") else "audio"] = urls[made.download]
    if made.storyboard and made.storyboard in urls:
        outputs["storyboard"] = urls[made.storyboard]
    captions = made.captions
    if captions is not None and captions.vtt in urls:
        outputs["captions"] = [
            {"lang": captions.language, "format": "vtt", "url": urls[captions.vtt]},
            {"lang": captions.language, "format": "srt", "url": urls[captions.srt]},
        ]
        outputs["transcript"] = urls[captions.transcript_json]
    return outputs
