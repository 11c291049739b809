"""Redis lost while a job runs: the job still ends `ready`, once.

A real `upload-service serve`, a real `upload-service worker` and real ffmpeg,
on a Redis of the test's own that is stopped mid-transcode and started again
empty (it keeps nothing on disk): the queue, the locks and the status cache are
gone, the status itself is in the state (files here) and survives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, free_port, mint_token
from live_helpers import wait_until
from media_helpers import make_video
from pipeline_helpers import WorkerProcess, get_status, pipeline_settings, upload_file
from webhook_helpers import Receiver

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OUTAGE = 8.0  # seconds Redis stays down
# Locks of 3 s (half the heartbeat timeout), looks every second: the look for lost
# jobs comes 1 + 3 s after Redis returns, instead of up to 5 + 15 s.
QUICK_LOOKS = {"WORKER_HEARTBEAT_TIMEOUT": "6", "WORKER_MAINTENANCE_INTERVAL": "1"}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and restart (the session's is shared)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(free_port(), folder)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def job_settings(tmp_path: Path, private_redis: RedisServer, receiver: Receiver) -> Settings:
    return pipeline_settings(tmp_path / "data", private_redis.url, receiver=receiver)


def stored_status(settings: Settings, upload_id: str) -> dict[str, Any]:
    """The state's record (a file here): what survives Redis."""
    path = settings.data_dir / "status" / f"{upload_id}.json"
    try:
        record: dict[str, Any] = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return record


def ready_events(receiver: Receiver, upload_id: str) -> list[dict[str, Any]]:
    events = [json.loads(r.body) for r in list(receiver.requests)]
    return [e for e in events if e["type"] == "media.ready" and e["data"]["id"] == upload_id]


def transcoding(settings: Settings, upload_id: str) -> bool:
    progress = stored_status(settings, upload_id).get("progress") or {}
    return bool(progress.get("stage") == "transcode")


def ended(settings: Settings, upload_id: str) -> bool:
    return stored_status(settings, upload_id).get("state") in ("ready", "failed")


def assert_ready_once(
    server: LiveServer,
    receiver: Receiver,
    settings: Settings,
    upload_id: str,
    worker: WorkerProcess,
) -> None:
    record = get_status(server.url, API_KEY, upload_id)
    assert record["state"] == "ready", record
    renditions = record["outputs"]["renditions"]
    assert [r["height"] for r in renditions] == [720, 480, 360]
    published = settings.media_dir / upload_id
    assert (published / "hls" / "master.m3u8").is_file() and (published / "poster.jpg").is_file()
    wait_until(lambda: bool(ready_events(receiver, upload_id)), "media.ready arrives", 60)
    line = f"pipeline.ready upload_id={upload_id}"
    wait_until(lambda: line in worker.log(), "the job's last log line", 30)
    assert worker.log().count(line) == 1
    assert len(ready_events(receiver, upload_id)) == 1


def test_a_job_running_through_a_redis_restart_ends_ready_once(
    tmp_path: Path, private_redis: RedisServer, job_settings: Settings, receiver: Receiver
) -> None:
    """The job's status writes reach the state while Redis is away; its cache refresh
    and its media.ready wait for Redis; its lock, lost with Redis, is put back; the
    look for lost jobs that follows the restart finds a live job (or a finished one)
    and sends nothing."""
    clip = make_video(tmp_path / "clip.mp4", seconds=12, size="1280x720")
    server = LiveServer(job_settings, extra_env={"UPLOAD_SERVER_WORKERS": "1"}).start()
    worker = WorkerProcess(job_settings, QUICK_LOOKS, name="worker").start()
    try:
        upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)
        wait_until(lambda: transcoding(job_settings, upload_id), "the transcode starts", 90)
        private_redis.stop()
        time.sleep(OUTAGE)
        private_redis.start()
        back_at = time.monotonic()
        seen = len(worker.log())
        wait_until(lambda: ended(job_settings, upload_id), "the job ends", 120)
        print(f"ready {time.monotonic() - back_at:.1f} s after Redis returned (0: before)")
        # The look for lost jobs that follows the restart has been made.
        wait_until(lambda: "lost_jobs.resent" in worker.log()[seen:], "the look", 60)
        assert_ready_once(server, receiver, job_settings, upload_id, worker)
        # Gone on through the outage: neither retried nor re-sent from the start.
        assert worker.log().count(f"pipeline.started upload_id={upload_id}") == 1
    finally:
        worker.stop()
        server.stop()


def test_a_job_killed_during_a_redis_outage_is_sent_again_when_redis_returns(
    tmp_path: Path, private_redis: RedisServer, job_settings: Settings, receiver: Receiver
) -> None:
    """The job's worker dies while Redis is away, and Redis comes back without the
    message: another worker, up all along, sends it again once Redis is back."""
    clip = make_video(tmp_path / "clip.mp4", seconds=12, size="1280x720")
    server = LiveServer(job_settings, extra_env={"UPLOAD_SERVER_WORKERS": "1"}).start()
    # Both up before the upload, whichever takes the job is the one killed: booting
    # the second worker while the first transcodes gave a fast machine time to finish.
    workers = [WorkerProcess(job_settings, QUICK_LOOKS, name=n).start() for n in "ab"]
    try:
        for worker in workers:
            wait_until(lambda w=worker: "ready for action" in w.log(), "a worker boots", 90)
        upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)
        wait_until(lambda: transcoding(job_settings, upload_id), "the transcode starts", 90)
        started = f"pipeline.started upload_id={upload_id}"
        wait_until(lambda: any(started in w.log() for w in workers), "the job's worker", 30)
        doomed, survivor = workers if started in workers[0].log() else workers[::-1]
        private_redis.stop()
        doomed.kill()
        assert not ended(job_settings, upload_id), "the job ended before its worker was killed"
        time.sleep(OUTAGE)
        private_redis.start()
        back_at = time.monotonic()
        wait_until(lambda: ended(job_settings, upload_id), "the job ends", 120)
        print(f"lost job ready {time.monotonic() - back_at:.1f} s after Redis returned")
        assert f"lost_jobs.resent count=1 upload_ids={upload_id}" in survivor.log()
        assert_ready_once(server, receiver, job_settings, upload_id, survivor)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
