"""The withdrawal after a DELETE, in-process: each race it exists for, set up exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from processors.joblock import JobLock
from processors.pipeline import PipelineContext
from processors.progress import JobStatus, Piece
from processors.publish import LocalPublisher
from processors.withdraw import PipelineBusy, withdraw
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, UploadEnded, new_record
from upload_service.core.store.base import UploadInfo

pytestmark = pytest.mark.one_path


@pytest.fixture
def ctx(settings: Settings) -> PipelineContext:
    settings = settings.with_changes(webhook_url="http://127.0.0.1:9/hooks")
    return PipelineContext(
        settings=settings,
        status=StatusStore(settings.status_dir, Redis.from_url(settings.redis_url)),
        jobs=MemoryJobQueue(),
        publisher=LocalPublisher(settings.media_dir),
    )


def published_upload(ctx: PipelineContext, upload_id: str, state: str) -> None:
    info = UploadInfo(id=upload_id, owner="user-1", length=4, offset=4)
    ctx.status.put(new_record(info) | {"state": state, "outputs": {"hls": "/media/x"}})
    item = ctx.settings.data_dir / "segment.ts"
    item.parent.mkdir(parents=True, exist_ok=True)
    item.write_bytes(b"data")
    ctx.publisher.publish(upload_id, [(item, "hls/seg_00000.ts")], lambda p: None)


def sent_events(ctx: PipelineContext) -> list[str]:
    assert isinstance(ctx.jobs, MemoryJobQueue)
    return [args[0]["type"] for actor, args in ctx.jobs.sent if actor == "deliver_webhook"]


def test_a_job_write_that_crossed_the_delete_is_undone(ctx: PipelineContext) -> None:
    # The job read `processing`, the DELETE wrote `terminated`, the job wrote `ready`.
    published_upload(ctx, "crossed", "ready")
    withdraw("crossed", ctx)
    record = ctx.status.get("crossed")
    assert record is not None
    assert (record["state"], record["outputs"]) == ("terminated", {})
    assert not (ctx.settings.media_dir / "crossed").exists()
    assert sent_events(ctx) == ["upload.terminated"]  # again, so that it is the last word


def test_an_upload_deleted_after_ready_is_unpublished_quietly(ctx: PipelineContext) -> None:
    published_upload(ctx, "done", "terminated")
    checkpoint = ctx.settings.work_dir / "done" / "manifest.json"  # a crashed job's
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    withdraw("done", ctx)
    assert not checkpoint.parent.exists()
    withdraw("done", ctx)  # a redelivered message: nothing left to do, nothing fails
    assert not (ctx.settings.media_dir / "done").exists()
    assert sent_events(ctx) == []  # the server already announced the termination


def test_it_waits_for_a_running_job(ctx: PipelineContext, redis_client: Redis) -> None:
    published_upload(ctx, "busy", "terminated")
    running = JobLock(redis_client, "busy", 30)
    assert running.acquire()
    try:
        with pytest.raises(PipelineBusy):  # transient: Dramatiq retries it
            withdraw("busy", ctx)
        assert (ctx.settings.media_dir / "busy").exists()
    finally:
        running.release()
    withdraw("busy", ctx)
    assert not (ctx.settings.media_dir / "busy").exists()


def test_a_job_cannot_write_over_a_deleted_upload(ctx: PipelineContext, tmp_path: Path) -> None:
    info = UploadInfo(id="gone", owner="user-1", length=4, offset=4)
    ctx.status.put(new_record(info) | {"state": "terminated"})
    job = JobStatus(ctx.status, "gone", interval=0.0)
    job.plan([Piece("rung0", "transcode", 1.0)])
    with pytest.raises(UploadEnded):
        job.piece("rung0")
    with pytest.raises(UploadEnded):
        job.write(state="playable")
    with pytest.raises(UploadEnded):
        ctx.status.advance("gone", state="ready")
    record = ctx.status.get("gone")
    assert record is not None and record["state"] == "terminated"
