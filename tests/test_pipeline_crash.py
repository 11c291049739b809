"""A worker SIGKILLed in the middle of a transcode: the job is redone elsewhere, ready once.

The Redis broker requeues a dead worker's unacked message when a live worker's
maintenance pass sees the dead one's heartbeat older than the timeout; both
are lowered here (WORKER_HEARTBEAT_TIMEOUT, WORKER_MAINTENANCE_CHANCE) so the
test takes seconds, not the default minute.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from media_helpers import make_video
from pipeline_helpers import (
    FAST_REQUEUE,
    WorkerProcess,
    ffprobe_json,
    get_status,
    pipeline_settings,
    upload_file,
    wait_for_state,
)

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.one_path]


@pytest.fixture
def crash_settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return pipeline_settings(tmp_path / "data", redis_server.url, db=8)


def ffmpeg_children(worker: WorkerProcess) -> list[str]:
    """The worker's ffmpeg processes: in sandboxes of their own sessions, so found by
    what they read (the worker's data dir), not by process group."""
    found = subprocess.run(["pgrep", "-x", "ffmpeg"], capture_output=True, text=True)
    mine = []
    for pid in found.stdout.split():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if str(worker.settings.data_dir.resolve()).encode() in command:
            mine.append(pid)
    return mine


def test_sigkilled_worker_mid_transcode_is_redone_and_ends_ready_once(
    tmp_path: Path, crash_settings: Settings, workers: list[WorkerProcess]
) -> None:
    clip = make_video(tmp_path / "long.mp4", seconds=12, size="1280x720")
    server = LiveServer(crash_settings).start()
    try:
        first = WorkerProcess(crash_settings, FAST_REQUEUE, name="worker-a").start()
        workers.append(first)
        upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)

        # Wait until ffmpeg is busy with the ladder, then kill the whole worker.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            progress = get_status(server.url, API_KEY, upload_id)["progress"] or {}
            if progress.get("stage") == "transcode" and ffmpeg_children(first):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the transcode never started")
        first.kill()
        gone_by = time.monotonic() + 10  # killed processes linger until init reaps them
        while ffmpeg_children(first) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert ffmpeg_children(first) == []
        killed = get_status(server.url, API_KEY, upload_id)
        # Killed mid-ladder: before or after the smallest rung made it playable.
        assert killed["state"] in ("processing", "playable")
        assert (crash_settings.work_dir / upload_id).exists()  # SIGKILL: no cleanup ran

        second = WorkerProcess(crash_settings, FAST_REQUEUE, name="worker-b").start()
        workers.append(second)
        record = wait_for_state(server.url, API_KEY, upload_id, timeout=80)
        assert record["state"] == "ready", record

        outputs = record["outputs"]
        base = f"/media/{upload_id}/"
        # Signed playback: the one signed query of the upload on every media URL.
        signed = "?" + urlsplit(outputs["hls"]).query
        assert signed.startswith("?exp=")
        assert outputs["hls"] == base + "hls/master.m3u8" + signed
        assert outputs["mp4"] == base + "video.mp4" + signed
        assert outputs["original"] == f"/files/{upload_id}"
        assert [(r["height"], r["url"].removesuffix(signed)) for r in outputs["renditions"]] == [
            (720, base + "hls/v0/index.m3u8"),
            (480, base + "hls/v1/index.m3u8"),
            (360, base + "hls/v2/index.m3u8"),
        ]
        streams = ffprobe_json(server.url + outputs["hls"])["streams"]
        assert {s["height"] for s in streams if s["codec_type"] == "video"} == {720, 480, 360}
        assert not (crash_settings.work_dir / upload_id).exists()
        assert sorted(p.name for p in crash_settings.media_dir.iterdir()) == [upload_id]

        # Ready exactly once: the killed worker never got there, the new one once.
        marker = f"pipeline.ready upload_id={upload_id}"
        assert first.log().count(marker) == 0
        assert second.log().count(marker) == 1
        assert second.log().count(f"pipeline.started upload_id={upload_id}") == 1
    finally:
        server.stop()
