"""What runs after an upload finishes: probe, then the job's pieces (`processors.pieces`).

Plain functions around a `PipelineContext`; `processors.actors` wraps them in
Dramatiq actors. Status: `uploaded` → `processing` (progress: stage, percent of
the whole job, eta_s) → `playable` (the smallest rendition published) →
`ready` with every output, or `failed` with `error`.

Failures (see `processors.failures`): bad media ends `failed` here and returns
normally, so Dramatiq never retries it; anything else propagates and Dramatiq
retries it with backoff; when retries run out `mark_exhausted` records
`processing_failed`.

Idempotent: an upload already `ready` (or finally `failed`, or gone) is left
alone, so a redelivered or duplicated message does no work twice. A redo after
a crash, or a retry, resumes from the checkpoint in the job's work dir
(`processors.checkpoint`): the pieces already made are not made again, and it
publishes the same names, so it ends with the same outputs.

The upload's bytes come through the store protocol (`processors.source`).
The original itself is never published: it stays in the store, private, and
`outputs.original` is its download URL (`GET /files/{id}`, owner or API key).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from upload_service.core.events import emit
from upload_service.core.jobs import JobQueue
from upload_service.core.logs import log_event
from upload_service.core.settings import Settings, usable_cpus
from upload_service.core.status import Record, StatusStore, UploadEnded
from upload_service.core.store.base import UploadInfo, UploadStore
from upload_service.core.store.factory import make_store

from .checkpoint import Checkpoint
from .content import looks_static
from .failures import MediaError, OutOfSpace, is_out_of_space
from .job_parts import JobParts
from .joblock import JobLock, lock_ttl
from .media_tools import MediaTools
from .pieces import run_pieces
from .probe import MediaInfo, probe
from .progress import JobStatus
from .publish import Publisher
from .source import fetch_source, load_upload
from .speech import get_engine
from .transcribe import TranscriptionResult, transcribe_media
from .workdir import job_dir, remove_job_dir

log = logging.getLogger("processors.pipeline")

# States in which there is nothing (more) to do for a pipeline message.
SETTLED = {"ready", "terminated", "expired"}
# Failures of the file itself (processors.failures.MediaError): a redelivered
# message must not try again.
PERMANENT_CODES = {
    "unsupported_media",
    "corrupt_media",
    "frame_too_large",
    "media_too_long",
    "too_many_streams",
    "processing_limit",
    "transcode_failed",
}


@dataclass
class PipelineContext:
    settings: Settings
    status: StatusStore
    jobs: JobQueue
    publisher: Publisher
    # Where uploads are (UPLOAD_STORE); None: built from the settings per job.
    store: UploadStore | None = None

    @property
    def webhooks(self) -> bool:
        return bool(self.settings.webhook_url)


def transcode_timeout(settings: Settings, duration: float | None) -> float:
    """ffmpeg's time limit: scales with the media, never below the minimum."""
    return max(settings.transcode_timeout_min, settings.transcode_timeout_factor * (duration or 0))


def transcribe_timeout(settings: Settings, duration: float | None) -> float:
    """The speech engine's time limit, like ffmpeg's."""
    return max(
        settings.transcribe_timeout_min, settings.transcribe_timeout_factor * (duration or 0)
    )


def process_upload(upload_id: str, ctx: PipelineContext) -> Record | None:
    """Run the pipeline for one upload; returns its final record (None if unknown).

    One run per upload at a time (`processors.joblock`): a duplicate message
    that arrives while another run holds the lock returns at once, touching
    neither the status nor the work dir. The lock is taken before the state is
    read, so a run that ends `ready` meanwhile is seen as settled. Without
    Redis (a status store without one) there is nothing to share, and no lock.
    """
    redis = ctx.status.redis
    if redis is None:
        return _process_upload(upload_id, ctx)
    lock = JobLock(redis, upload_id, lock_ttl(ctx.settings.worker_heartbeat_timeout))
    if not lock.acquire():
        log_event(log, "pipeline.skipped", upload_id=upload_id, reason="already_running")
        return ctx.status.get(upload_id)
    with lock:
        return _process_upload(upload_id, ctx)


def _process_upload(upload_id: str, ctx: PipelineContext) -> Record | None:
    # Each early return below may follow a run that was SIGKILLed mid-job: this run
    # holds the pipeline lock, so what is in the upload's work dir is that run's
    # leftovers, and nothing will redo it.
    record = ctx.status.get(upload_id)
    if record is None:
        remove_job_dir(ctx.settings.work_dir, upload_id)
        log_event(log, "pipeline.skipped", upload_id=upload_id, reason="unknown upload")
        return None
    state = record["state"]
    error_code = (record.get("error") or {}).get("code")
    # Decided on the record alone: a redelivered message costs no store call.
    if state in SETTLED or state == "uploading" or error_code in PERMANENT_CODES:
        remove_job_dir(ctx.settings.work_dir, upload_id)
        log_event(log, "pipeline.skipped", upload_id=upload_id, state=state)
        return record
    store = ctx.store or make_store(ctx.settings)
    info = load_upload(store, upload_id)
    if info is None:
        remove_job_dir(ctx.settings.work_dir, upload_id)
        log_event(log, "pipeline.skipped", upload_id=upload_id, reason="unknown upload")
        return None
    try:
        return _run(ctx, store, info, state)
    except UploadEnded as ended:
        return _stopped(ctx, upload_id, ended.state)
    except Exception as exc:
        if not is_out_of_space(exc):
            raise
        raise _out_of_space(ctx, upload_id, exc) from exc


def _out_of_space(ctx: PipelineContext, upload_id: str, exc: Exception) -> OutOfSpace:
    """A full disk is the machine's trouble: the job is retried later (Dramatiq's
    backoff), and meanwhile the status says why it waits, with a code."""
    message = f"the worker's disk is full; processing is retried later ({exc})"
    # Not written when deleted meanwhile, or when the status's own disk is the full one.
    with contextlib.suppress(UploadEnded, KeyError, OSError):
        ctx.status.advance(upload_id, error={"code": OutOfSpace.code, "message": message})
    log_event(log, "pipeline.out_of_space", logging.WARNING, upload_id=upload_id, error=str(exc))
    return OutOfSpace(message)


def _stopped(ctx: PipelineContext, upload_id: str, state: str) -> Record | None:
    """The upload was deleted (or expired) mid-job: ffmpeg is already stopped (an
    exception in its progress callback kills it) and the work dir is gone; what
    was published goes too. No webhook: `upload.terminated` was the last word."""
    ctx.publisher.unpublish(upload_id)
    log_event(log, "pipeline.stopped", upload_id=upload_id, state=state)
    return ctx.status.get(upload_id)


def _run(ctx: PipelineContext, store: UploadStore, info: UploadInfo, state: str) -> Record | None:
    upload_id = info.id
    started = time.monotonic()
    log_event(log, "pipeline.started", upload_id=upload_id, attempt_state=state)
    job = JobStatus(ctx.status, upload_id)
    with job_dir(ctx.settings.work_dir, upload_id, resume=True) as work:
        checkpoint = Checkpoint(work)
        if state != "playable":
            job.write(state="processing", progress={"stage": "probe", "percent": 0.0})
        source = fetch_source(store, info, work)
        tools = MediaTools.for_job(ctx.settings, source, work)
        try:
            media = probe(source, info.kinds, tools)
            if looks_static(tools, media):
                media = replace(media, static=True)
                log_event(log, "pipeline.static_content", upload_id=upload_id)
            job.write(media=media.public(), error=None)
            parts = JobParts(
                upload_id=upload_id,
                tools=tools,
                media=media,
                work=work,
                publisher=ctx.publisher,
                status=job,
                checkpoint=checkpoint,
                timeout=transcode_timeout(ctx.settings, media.duration),
                original_url=ctx.settings.download_url(upload_id),
                transcribe=_transcriber(ctx, upload_id, tools, media, info),
                emit_event=lambda event, record: emit(ctx.jobs, ctx.webhooks, event, record),
                was_playable=state == "playable",
            )
            record = run_pieces(parts)
        except MediaError as exc:
            # A failed upload plays nothing, even if its first rung was published.
            ctx.publisher.unpublish(upload_id)
            return fail(ctx, upload_id, exc.code, exc.message, outputs={})
        except UploadEnded as ended:
            return _stopped(ctx, upload_id, ended.state)
        # Anything else is transient: Dramatiq retries, and the work dir (with its
        # checkpoint) is kept for the retry, which resumes from it.
    emit(ctx.jobs, ctx.webhooks, "media.ready", record)
    log_event(
        log,
        "pipeline.ready",
        upload_id=upload_id,
        kind=media.kind,
        duration=media.duration,
        renditions=len(record["outputs"].get("renditions") or []),
        resumed=checkpoint.resumed,
        # Runs of each piece over every attempt: 1 each, unless a piece was cut short.
        runs=checkpoint.data["runs"],
        seconds=round(time.monotonic() - started, 2),
    )
    return record


def _transcriber(
    ctx: PipelineContext, upload_id: str, tools: MediaTools, media: MediaInfo, info: UploadInfo
) -> Callable[[Path, Callable[[float], None]], TranscriptionResult | None] | None:
    """What makes the transcript into a folder, or None when there is none to make."""
    if not (ctx.settings.transcribe and media.has_audio):
        return None
    # The token's meta may name the lesson's language; else the setting; else detected.
    language = info.meta.get("language") or ctx.settings.transcribe_language

    def transcribe(
        folder: Path, on_progress: Callable[[float], None]
    ) -> TranscriptionResult | None:
        return _transcribe(ctx, upload_id, tools, media, folder, language, on_progress)

    return transcribe


def _transcribe(
    ctx: PipelineContext,
    upload_id: str,
    tools: MediaTools,
    media: MediaInfo,
    out_dir: Path,
    language: str | None,
    on_progress: Callable[[float], None],
) -> TranscriptionResult | None:
    # Captions are an extra: without them the media is still worth publishing.
    try:
        return transcribe_media(
            tools.source,
            out_dir,
            language,
            ctx.settings.whisper_model,
            on_progress,
            engine=get_engine(ctx.settings.whisper_model, speech_threads(ctx.settings)),
            tools=tools,
            timeout=transcribe_timeout(ctx.settings, media.duration),
        )
    except UploadEnded:
        raise
    except Exception as exc:
        log_event(
            log,
            "pipeline.transcribe_failed",
            logging.WARNING,
            upload_id=upload_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        return None


def speech_threads(settings: Settings) -> int:
    """TRANSCRIBE_THREADS, or half the usable CPUs: the encoder has the rest."""
    return settings.transcribe_threads or max(1, usable_cpus() // 2)


def fail(ctx: PipelineContext, upload_id: str, code: str, message: str, **changes: Any) -> Record:
    error = {"code": code, "message": message}
    record = ctx.status.advance(upload_id, state="failed", error=error, **changes)
    emit(ctx.jobs, ctx.webhooks, "media.failed", record)
    log_event(log, "pipeline.failed", logging.WARNING, upload_id=upload_id, code=code, msg=message)
    return record


def mark_exhausted(ctx: PipelineContext, upload_id: str, reason: str) -> Record | None:
    """Retries ran out on a transient failure: tell the backend it will not finish."""
    record = ctx.status.get(upload_id)
    remove_job_dir(ctx.settings.work_dir, upload_id)  # no retry will resume from it
    if record is None or record["state"] in SETTLED or record["state"] == "failed":
        return record
    # The last attempt's transient code (a full disk) says more than a generic one.
    code = (record.get("error") or {}).get("code") or "processing_failed"
    try:
        ctx.publisher.unpublish(upload_id)
        return fail(
            ctx,
            upload_id,
            code,
            f"processing failed after retries: {reason}",
            outputs={},
        )
    except UploadEnded:
        return ctx.status.get(upload_id)


__all__ = ["MediaInfo", "PipelineContext", "process_upload", "mark_exhausted", "fail"]
