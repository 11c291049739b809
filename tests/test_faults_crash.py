"""Crashes: a SIGKILLed server's uploads resume at once on its successor, children
die with their supervisor, and a SIGKILLed worker's job comes back.

Every process here is real (`upload-service serve` / `worker`), killed for real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from fault_helpers import children_of, process_gone, serving
from live_helpers import MIB, OCTETS, SlowPatch, create, head_offset, random_file, tus, wait_until
from media_helpers import make_video
from pipeline_helpers import (
    WorkerProcess,
    get_status,
    pipeline_settings,
    upload_file,
    wait_for_state,
)

from upload_service.core.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    """Servers to stop at the end, whatever failed (a test may start several)."""
    started: list[LiveServer] = []
    yield started
    for server in started:
        if server.process is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


def metrics_dir(tmp_path: Path) -> dict[str, str]:
    """Several-process servers keep their metrics files in the test's own folder."""
    folder = tmp_path / "metrics"
    folder.mkdir(exist_ok=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(folder)}


def test_a_restarted_server_resumes_a_killed_ones_upload_without_423(
    settings: Settings, tmp_path: Path, servers: list[LiveServer]
) -> None:
    """The killed server's lock is still in Redis with a minute to live; the new server
    takes it over at the first PATCH, because the holder's connection is gone."""
    size = 4 * MIB
    path, _ = random_file(tmp_path / "clip.bin", size)
    data = path.read_bytes()
    env = {"UPLOAD_LOCK_TTL": "60", "UPLOAD_SERVER_WORKERS": "1"}
    server = LiveServer(settings, extra_env=env)
    servers.append(server.start())
    token = mint_token(TOKEN_SECRET, "user-1")
    upload_id = create(server, token, size)
    url = f"{server.url}/files/{upload_id}"
    slow = SlowPatch(url, token, 0, data, pause_at=size // 2).start()
    wait_until(lambda: head_offset(server, token, upload_id) > 0, "bytes reach the disk")
    server.kill()
    slow.finish()

    successor = LiveServer(settings, port=server.port, extra_env=env)
    servers.append(successor.start())
    listening = time.monotonic()
    offset = head_offset(successor, token, upload_id)
    assert 0 < offset < size
    patch = httpx.patch(
        url,
        content=data[offset:],
        headers=tus(token, **{"Upload-Offset": str(offset), "Content-Type": OCTETS}),
        timeout=30,
    )
    assert patch.status_code == 204, (patch.status_code, patch.text)
    assert int(patch.headers["upload-offset"]) == size
    print(f"resumed {time.monotonic() - listening:.3f} s after the successor listened")
    assert "lock.taken_over" in Path(str(successor.log_path)).read_text()


def test_a_live_holder_answers_423_with_retry_after(
    settings: Settings, servers: list[LiveServer]
) -> None:
    server = LiveServer(settings, extra_env={"UPLOAD_SERVER_WORKERS": "1"})
    servers.append(server.start())
    token = mint_token(TOKEN_SECRET, "user-1")
    size = 2 * MIB
    upload_id = create(server, token, size)
    url = f"{server.url}/files/{upload_id}"
    slow = SlowPatch(url, token, 0, os.urandom(size), pause_at=MIB).start()
    wait_until(lambda: head_offset(server, token, upload_id) > 0, "bytes reach the disk")
    second = httpx.patch(
        url,
        content=b"x",
        headers=tus(token, **{"Upload-Offset": "0", "Content-Type": OCTETS}),
    )
    assert second.status_code == 423
    assert second.headers["retry-after"] == "1"
    slow.finish()
    assert slow.response is not None and slow.response.status_code == 204


def test_a_killed_serve_supervisor_takes_its_worker_processes_with_it(
    settings: Settings, tmp_path: Path, servers: list[LiveServer]
) -> None:
    env = {"UPLOAD_SERVER_WORKERS": "2", **metrics_dir(tmp_path)}
    server = LiveServer(settings, extra_env=env)
    servers.append(server.start())
    assert server.process is not None
    supervisor = server.process.pid
    wait_until(lambda: len(children_of(supervisor, b"spawn_main")) == 2, "both workers run")
    workers = children_of(supervisor, b"spawn_main")
    os.kill(supervisor, signal.SIGKILL)  # the supervisor alone, not its group
    server.process.wait(10)
    wait_until(lambda: all(process_gone(pid) for pid in workers), "the workers exit", 15)
    assert not serving(server.port)


def test_a_killed_worker_supervisor_takes_its_worker_processes_with_it(
    settings: Settings,
) -> None:
    worker = WorkerProcess(settings, name="orphan-check").start()
    try:
        assert worker.process is not None
        supervisor = worker.process.pid
        wait_until(lambda: "Worker process is ready" in worker.log(), "the worker boots", 60)
        children = children_of(supervisor, b"")
        assert children
        os.kill(supervisor, signal.SIGKILL)
        worker.process.wait(10)
        wait_until(lambda: all(process_gone(pid) for pid in children), "the children exit", 30)
    finally:
        if worker.process is not None:
            with_group_killed(worker.process)


def with_group_killed(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def crash_settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return pipeline_settings(tmp_path / "data", redis_server.url, db=9)


@pytest.mark.slow
@pytest.mark.one_path  # the worker side: the upload path is not involved
def test_a_sigkilled_workers_job_comes_back_through_the_scheduled_maintenance_pass(
    tmp_path: Path, crash_settings: Settings, workers: list[WorkerProcess]
) -> None:
    """Dramatiq's own random pass is left at its default (0.1 % of commands, which
    took about twenty minutes): only the workers' scheduled pass can bring it back."""
    clip = make_video(tmp_path / "clip.mp4", seconds=12, size="1280x720")
    env = {"WORKER_HEARTBEAT_TIMEOUT": "3", "WORKER_MAINTENANCE_INTERVAL": "1"}
    server = LiveServer(crash_settings, extra_env={"UPLOAD_SERVER_WORKERS": "1"}).start()
    try:
        first = WorkerProcess(crash_settings, env, name="worker-a").start()
        workers.append(first)
        upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)
        wait_until(
            lambda: get_status(server.url, API_KEY, upload_id)["state"] == "processing",
            "the job starts",
            60,
        )
        first.kill()
        killed_at = time.monotonic()
        second = WorkerProcess(crash_settings, env, name="worker-b").start()
        workers.append(second)
        record = wait_for_state(server.url, API_KEY, upload_id, timeout=90)
        assert record["state"] == "ready", record
        print(f"killed worker's job ready {time.monotonic() - killed_at:.1f} s after the kill")
        assert f"pipeline.started upload_id={upload_id}" in second.log()
    finally:
        server.stop()
