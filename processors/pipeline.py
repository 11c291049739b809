"""What runs after an upload finishes: probe → transcode → transcribe → publish.

Plain functions around a `PipelineContext`; `processors.actors` wraps them in
Dramatiq actors. Status: `uploaded` → `processing` (progress.stage and
percent) → `ready` with `outputs` and `media`, or `failed` with `error`.

Failures (see `processors.failures`): bad media ends `failed` here and returns
normally, so Dramatiq never retries it; anything else propagates and Dramatiq
retries it with backoff; when retries run out `mark_exhausted` records
`processing_failed`.

Idempotent: an upload already `ready` (or finally `failed`, or gone) is left
alone, so a redelivered or duplicated message does no work twice. A redo after
a crash starts from scratch in a wiped work dir and publishes the same names,
so it ends with the same outputs.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upload_service.events import emit
from upload_service.jobs import JobQueue
from upload_service.logs import log_event
from upload_service.settings import Settings
from upload_service.status import Record, StatusStore
from upload_service.store.base import UploadInfo

from .failures import MediaError
from .ffmpeg_run import Throttle
from .probe import MediaInfo, probe
from .publish import Publisher
from .transcode import TranscodeResult, transcode
from .transcribe import TranscriptionResult, transcribe_media
from .workdir import job_dir

log = logging.getLogger("processors.pipeline")

# States in which there is nothing (more) to do for a pipeline message.
SETTLED = {"ready", "terminated", "expired"}
PERMANENT_CODES = {"unsupported_media", "corrupt_media"}
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass
class PipelineContext:
    settings: Settings
    status: StatusStore
    jobs: JobQueue
    publisher: Publisher

    @property
    def webhooks(self) -> bool:
        return bool(self.settings.webhook_url)


def load_upload(settings: Settings, upload_id: str) -> UploadInfo | None:
    try:
        raw = (settings.uploads_dir / f"{upload_id}.info").read_text()
    except (FileNotFoundError, OSError):
        return None
    return UploadInfo.from_json(json.loads(raw))


def transcode_timeout(settings: Settings, duration: float | None) -> float:
    """ffmpeg's time limit: scales with the media, never below the minimum."""
    return max(settings.transcode_timeout_min, settings.transcode_timeout_factor * (duration or 0))


def original_name(info: UploadInfo) -> str:
    suffix = Path(str(info.metadata.get("filename") or "")).suffix.lower()
    return "original" + suffix if _SAFE_SUFFIX.match(suffix) else "original"


class Progress:
    """Writes `processing` with {stage, percent}, throttled to about once a second."""

    def __init__(self, ctx: PipelineContext, upload_id: str) -> None:
        self.ctx = ctx
        self.upload_id = upload_id
        self.stage = "probe"

    def _write(self, percent: float) -> None:
        progress = {"stage": self.stage, "percent": percent}
        self.ctx.status.update(self.upload_id, state="processing", progress=progress)

    def start(self, stage: str) -> Callable[[float], None]:
        self.stage = stage
        self._write(0.0)
        return Throttle(self._write)


def process_upload(upload_id: str, ctx: PipelineContext) -> Record | None:
    """Run the pipeline for one upload; returns its final record (None if gone)."""
    record = ctx.status.get(upload_id)
    info = load_upload(ctx.settings, upload_id)
    if record is None or info is None:
        log_event(log, "pipeline.skipped", upload_id=upload_id, reason="unknown upload")
        return None
    state = record["state"]
    error_code = (record.get("error") or {}).get("code")
    if state in SETTLED or state == "uploading" or error_code in PERMANENT_CODES:
        log_event(log, "pipeline.skipped", upload_id=upload_id, state=state)
        return record
    source = ctx.settings.uploads_dir / upload_id
    started = time.monotonic()
    log_event(log, "pipeline.started", upload_id=upload_id, attempt_state=state)
    progress = Progress(ctx, upload_id)
    with job_dir(ctx.settings.work_dir, upload_id) as work:
        progress.start("probe")
        try:
            media = probe(source, info.kinds)
        except MediaError as exc:
            return fail(ctx, upload_id, exc.code, exc.message)
        ctx.status.update(upload_id, media=media.public(), error=None)
        out_dir = work / "out"
        result = transcode(
            source,
            out_dir,
            media,
            timeout=transcode_timeout(ctx.settings, media.duration),
            log_path=work / "ffmpeg.log",
            on_progress=progress.start("transcode"),
        )
        captions = None
        if ctx.settings.transcribe and media.has_audio:
            # The token's meta may name the lesson's language; else the setting; else detected.
            language = info.meta.get("language") or ctx.settings.transcribe_language
            captions = _transcribe(
                ctx, upload_id, source, out_dir, language, progress.start("transcribe")
            )
        items = [(source, original_name(info))] + [
            (p, str(p.relative_to(out_dir))) for p in sorted(out_dir.rglob("*")) if p.is_file()
        ]
        urls = ctx.publisher.publish(upload_id, items, progress.start("publish"))
    outputs = build_outputs(urls, original_name(info), result, captions)
    record = ctx.status.update(
        upload_id,
        state="ready",
        progress={"stage": "publish", "percent": 100.0},
        media=media.public(),
        outputs=outputs,
        error=None,
    )
    emit(ctx.jobs, ctx.webhooks, "media.ready", record)
    log_event(
        log,
        "pipeline.ready",
        upload_id=upload_id,
        kind=media.kind,
        duration=media.duration,
        renditions=len(result.renditions),
        seconds=round(time.monotonic() - started, 2),
    )
    return record


def _transcribe(
    ctx: PipelineContext,
    upload_id: str,
    source: Path,
    out_dir: Path,
    language: str | None,
    on_progress: Callable[[float], None],
) -> TranscriptionResult | None:
    # Captions are an extra: without them the media is still worth publishing.
    try:
        return transcribe_media(
            source,
            out_dir,
            language,
            ctx.settings.whisper_model,
            on_progress,
        )
    except Exception as exc:
        log_event(
            log,
            "pipeline.transcribe_failed",
            logging.WARNING,
            upload_id=upload_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        return None


def build_outputs(
    urls: dict[str, str],
    original: str,
    result: TranscodeResult,
    captions: TranscriptionResult | None,
) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "original": urls[original],
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


def fail(ctx: PipelineContext, upload_id: str, code: str, message: str) -> Record:
    record = ctx.status.update(upload_id, state="failed", error={"code": code, "message": message})
    emit(ctx.jobs, ctx.webhooks, "media.failed", record)
    log_event(log, "pipeline.failed", logging.WARNING, upload_id=upload_id, code=code, msg=message)
    return record


def mark_exhausted(ctx: PipelineContext, upload_id: str, reason: str) -> Record | None:
    """Retries ran out on a transient failure: tell the backend it will not finish."""
    record = ctx.status.get(upload_id)
    if record is None or record["state"] in SETTLED or record["state"] == "failed":
        return record
    return fail(ctx, upload_id, "processing_failed", f"processing failed after retries: {reason}")


__all__ = ["MediaInfo", "PipelineContext", "process_upload", "mark_exhausted", "fail"]
