"""Speech to captions. (Placeholder interface: the transcription work fills it in.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TranscriptionResult:
    language: str
    # relative names (under out_dir) of the files written
    vtt: str
    srt: str
    transcript_json: str
    text: str
    extra: dict[str, str] = field(default_factory=dict)


def transcribe_media(
    source: Path,
    out_dir: Path,
    language: str | None,
    model: str | None,
    on_progress: Callable[[float], None],
) -> TranscriptionResult | None:
    """Write captions for `source` into `out_dir`; None when there is no speech."""
    return None
