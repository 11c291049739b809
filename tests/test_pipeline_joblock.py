"""The per-upload processing lock: one pipeline run per upload, however many messages.

Real Redis from the fixtures, a real clip through the real pipeline (ffmpeg),
a real process SIGKILLed while it holds a lock.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from conftest import settings_env
from media_helpers import make_video
from pipeline_helpers import tus_upload
from redis import Redis

from processors.joblock import KEY_PREFIX, JobLock, lock_ttl
from processors.pipeline import PipelineContext, process_upload
from processors.publish import PublishItem, make_publisher
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import Record, StatusStore

pytestmark = pytest.mark.one_path


class BlockingPublisher:
    """The real publisher; its first call waits until the test lets it go on."""

    def __init__(self, settings: Settings) -> None:
        self.inner = make_publisher(settings)
        self.calls = 0
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def add(
        self, upload_id: str, items: list[PublishItem], on_progress: Callable[[float], None]
    ) -> dict[str, str]:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.go_on.wait(60)
        return self.inner.add(upload_id, items, on_progress)

    def unpublish(self, upload_id: str) -> None:
        self.inner.unpublish(upload_id)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == name]


@pytest.mark.anyio
async def test_a_concurrent_duplicate_returns_at_once_and_touches_nothing(
    tmp_path: Path,
    settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    redis_client: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="processors.pipeline")
    settings = settings.with_changes(transcribe=False)
    upload_id = await tus_upload(client, make_token(), make_video(tmp_path / "a.mp4", 2))
    publisher = BlockingPublisher(settings)
    status = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    ctx = PipelineContext(settings, status, MemoryJobQueue(), publisher)
    results: list[Record | None] = []
    first = threading.Thread(target=lambda: results.append(process_upload(upload_id, ctx)))
    first.start()
    try:
        # The first run is mid-job: its first rung made, in the work dir, publishing.
        assert await anyio.to_thread.run_sync(publisher.entered.wait, 60)
        before = status.get(upload_id)
        assert before is not None and before["state"] == "processing"
        work = settings.work_dir / upload_id
        work_before = files_under(work)
        assert "out/hls/master.m3u8" in work_before and "manifest.json" in work_before

        # A duplicate message for the same upload, run by another thread meanwhile.
        second = await anyio.to_thread.run_sync(process_upload, upload_id, ctx)

        assert second == before
        assert status.get(upload_id) == before
        assert files_under(work) == work_before  # not wiped for a redo
        assert publisher.calls == 1
        assert {"upload_id": upload_id, "reason": "already_running"} in events(
            caplog, "pipeline.skipped"
        )
    finally:
        publisher.go_on.set()
        await anyio.to_thread.run_sync(first.join, 60)

    [record] = results
    assert record is not None and record["state"] == "ready"
    assert status.get(upload_id) == record
    assert [e["upload_id"] for e in events(caplog, "pipeline.started")] == [upload_id]
    assert [e["upload_id"] for e in events(caplog, "pipeline.ready")] == [upload_id]
    # Released at the end: a later message finds the upload settled, not locked.
    assert redis_client.exists(KEY_PREFIX + upload_id) == 0
    calls = publisher.calls
    assert process_upload(upload_id, ctx) == record
    assert publisher.calls == calls


HOLDER = """
import sys, time
from redis import Redis
from processors.joblock import JobLock
lock = JobLock(Redis.from_url(sys.argv[1]), sys.argv[2], ttl=float(sys.argv[3]))
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_of_a_killed_holder_lapses_after_its_ttl(
    settings: Settings, redis_client: Redis
) -> None:
    name = f"killed-{time.time_ns()}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, settings.redis_url, name, "1.0"],
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finally:
        holder.kill()
        holder.wait(10)

    # SIGKILL ran no `finally`: the key is still there, nobody else gets it...
    redo = JobLock(redis_client, name, ttl=1.0)
    assert redo.acquire() is False
    assert 0 < redis_client.pttl(KEY_PREFIX + name) <= 1000
    # ...until its TTL runs out, no renewal keeping it.
    deadline = time.monotonic() + 20
    while not redo.acquire():
        assert time.monotonic() < deadline, "the dead holder's lock never lapsed"
        time.sleep(0.05)
    redo.release()
    assert redis_client.exists(KEY_PREFIX + name) == 0


def test_renewal_keeps_a_long_jobs_lock(redis_client: Redis) -> None:
    name = f"long-{time.time_ns()}"
    with JobLock(redis_client, name, ttl=0.5, renew_every=0.1) as job:
        assert job.acquire()
        time.sleep(1.5)  # three TTLs: held only because it is renewed
        other = JobLock(redis_client, name, ttl=0.5)
        assert other.acquire() is False
    assert other.acquire() is True  # released at the end of the job
    other.release()


def test_a_lapsed_holder_never_frees_the_next_holders_lock(redis_client: Redis) -> None:
    name = f"lapsed-{time.time_ns()}"
    stalled = JobLock(redis_client, name, ttl=0.2, renew_every=60)  # a renewal that never comes
    assert stalled.acquire()
    deadline = time.monotonic() + 20
    while redis_client.exists(KEY_PREFIX + name):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    successor = JobLock(redis_client, name, ttl=30)
    assert successor.acquire()
    stalled.release()  # compare-and-delete: not its token any more
    assert JobLock(redis_client, name).acquire() is False  # still the successor's
    successor.release()
    assert redis_client.exists(KEY_PREFIX + name) == 0


def test_a_redis_that_forgot_the_scripts_still_renews_and_releases(
    redis_client: Redis,
) -> None:
    name = f"noscript-{time.time_ns()}"
    with JobLock(redis_client, name, ttl=0.5, renew_every=0.1) as job:
        assert job.acquire()
        redis_client.script_flush()  # as after a Redis restart
        time.sleep(1.0)  # two TTLs: held only because renewal reloaded its script
        assert JobLock(redis_client, name).acquire() is False
        redis_client.script_flush()
    assert redis_client.exists(KEY_PREFIX + name) == 0


def test_the_ttl_stays_below_the_broker_heartbeat_timeout() -> None:
    assert lock_ttl(60.0) == 30.0
    assert lock_ttl(600.0) == 30.0
    # The crash test's fast requeue (3 s): the lock lapses in time for the redo.
    assert lock_ttl(3.0) == 1.5
