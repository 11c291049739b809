"""What a job's pieces share: the job's parts, and a piece made at most once.

Every piece is checkpointed (`Checkpoint`) once made and once published: a
redelivered job skips both, so a worker SIGKILLed in the middle of the ladder
goes on from the piece it was making, and ends with the same outputs.
`checkpointed` is the "made" half for a piece of one ffmpeg run or one thread;
the ladder's runs and publishing keep their own entries
(`processors.encoder_pieces`, `processors.piece_publishing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upload_service.core.status import Record

from .checkpoint import Checkpoint
from .ffmpeg_run import run_ffmpeg
from .media_tools import MediaTools
from .outputs import Made
from .probe import MediaInfo
from .progress import JobStatus
from .publish import Publisher
from .transcode import Deadline
from .transcribe import TranscriptionResult


@dataclass
class JobParts:
    """What a job's pieces need of the pipeline: its settings, tools and places."""

    upload_id: str
    tools: MediaTools
    media: MediaInfo
    work: Path
    publisher: Publisher
    status: JobStatus
    checkpoint: Checkpoint
    timeout: float
    original_url: str
    # Starts the transcript (returns None when there is none to make).
    transcribe: Callable[[Path, Callable[[float], None]], TranscriptionResult | None] | None
    emit_event: Callable[[str, Record], None]
    was_playable: bool = False
    made: Made = field(default_factory=Made)

    @property
    def out(self) -> Path:
        return self.work / "out"

    @property
    def log_path(self) -> Path:
        return self.work / "ffmpeg.log"


def piece_ffmpeg(job: JobParts, args: list[str], deadline: Deadline, piece: str | None) -> None:
    """One ffmpeg run of the job; its progress reported as `piece`'s, if it has one."""
    run_ffmpeg(
        args,
        tools=job.tools,
        duration=job.media.duration if piece else None,
        timeout=deadline.left(),
        log_path=job.log_path,
        on_progress=job.status.piece(piece) if piece else None,
    )


def checkpointed(job: JobParts, piece: str, make: Callable[[], Any]) -> Any:
    """Run `make` unless the checkpoint has `piece`; record what it returned."""
    if job.checkpoint.done(piece):
        return job.checkpoint.get(piece)
    job.checkpoint.started(piece)
    value = make()
    job.checkpoint.finish(piece, value)
    if piece in job.status.pieces:
        job.status.report(piece, 100.0)
    return value
