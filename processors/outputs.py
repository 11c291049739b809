"""The status record's `outputs`: published names turned into the contract's fields."""

from __future__ import annotations

from typing import Any

from .transcode import TranscodeResult
from .transcribe import TranscriptionResult


def build_outputs(
    urls: dict[str, str],
    original_url: str,
    result: TranscodeResult,
    captions: TranscriptionResult | None,
) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "original": original_url,
        "hls": urls[result.hls],
        "renditions": [
            {
                "height": rung.height or None,
                "width": rung.width or None,
                "bitrate": rung.bitrate,
                "url": urls[name],
            }
            for rung, name in result.renditions
        ],
    }
    if result.poster:
        outputs["poster"] = urls[result.poster]
    outputs["mp4" if result.download.endswith(".mp4") else "audio"] = urls[result.download]
    if captions is not None:
        outputs["captions"] = [
            {"lang": captions.language, "format": "vtt", "url": urls[captions.vtt]},
            {"lang": captions.language, "format": "srt", "url": urls[captions.srt]},
        ]
        outputs["transcript"] = urls[captions.transcript_json]
    return outputs
