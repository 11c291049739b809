"""A worker process's start: nothing touched at import, everything set up at boot.

`processors.actors` is imported in a child process (importing it sets Dramatiq's
global broker, which this process must not inherit); the worker is the real
`upload-service worker`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import settings_env
from pipeline_helpers import WorkerProcess
from webhook_helpers import wait_until

from upload_service.core.jobs import ACTOR_QUEUES
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path


def test_importing_the_actors_touches_neither_redis_nor_the_disk(
    settings: Settings, tmp_path: Path
) -> None:
    closed_port = 1  # nothing listens there: any Redis command would fail
    absent = tmp_path / "never-created"
    env = settings_env(settings) | {
        "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0",
        "UPLOAD_DATA_DIR": str(absent),
    }
    script = "import processors.actors as a; print(' '.join(sorted(a.broker.actors)))"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert set(ACTOR_QUEUES) <= set(result.stdout.split())
    assert not absent.exists()


@pytest.mark.e2e
def test_a_booting_worker_removes_only_stale_work_dirs(settings: Settings) -> None:
    stale = settings.work_dir / "killed-two-days-ago"
    recent = settings.work_dir / "killed-an-hour-ago"
    for path, age in ((stale, 2 * 86400), (recent, 3600)):
        path.mkdir(parents=True)
        (path / "segment.ts").write_bytes(b"partial output")
        os.utime(path, (time.time() - age, time.time() - age))
    worker = WorkerProcess(settings, name="boot-worker").start()
    try:
        wait_until(lambda: not stale.exists(), timeout=60, what=f"{stale} removed")
        wait_until(lambda: "worker.stale_work_dirs_removed count=1" in worker.log(), what="log")
        assert (recent / "segment.ts").exists()
    finally:
        worker.stop()


@pytest.mark.e2e
def test_a_worker_whose_store_cannot_be_made_stops_at_start(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    settings.uploads_dir.write_bytes(b"a file where the uploads directory should be")
    worker = WorkerProcess(settings, name="broken-worker").start()
    assert worker.process is not None
    try:
        code = worker.process.wait(60)
    finally:
        worker.stop()

    assert code != 0
    assert "worker.boot_failed" in worker.log()
    assert str(settings.uploads_dir) in worker.log()
