"""`serve` as several processes (uvicorn workers, one per CPU by default): metrics
that add up across them, a killed worker replaced while its upload resumes, and
the setting that picks how many."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer
from live_helpers import (
    MIB,
    SlowPatch,
    create,
    downloaded_sha256,
    head_offset,
    random_file,
    uploader_client,
    wait_until,
)
from protocol_helpers import Token

from upload_service.core.settings import Settings, usable_cpus


def worker_pids(server: LiveServer) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def two_workers(
    server_factory: Callable[..., LiveServer], **env: str
) -> tuple[LiveServer, int, int]:
    server = server_factory(UPLOAD_SERVER_WORKERS="2", **env)
    wait_until(lambda: len(worker_pids(server)) == 2, "both workers run")
    first, second = worker_pids(server)
    return server, first, second


def created_total(server: LiveServer) -> float:
    # httpx.get opens a connection of its own: any worker may answer it.
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("upload_created_total "):
            return float(line.split()[1])
    raise AssertionError("upload_created_total is missing from /metrics")


def test_metrics_add_up_every_worker_process(
    server_factory: Callable[..., LiveServer], make_token: Token
) -> None:
    server, first, second = two_workers(server_factory)
    token = make_token()
    # A stopped worker accepts nothing: the other one takes every new connection.
    for stopped, uploads in ((first, 3), (second, 2)):
        os.kill(stopped, signal.SIGSTOP)
        try:
            for _ in range(uploads):
                create(server, token, 1000)
        finally:
            os.kill(stopped, signal.SIGCONT)
    # Whichever worker answers a scrape, it counts the other's uploads too.
    assert [created_total(server) for _ in range(8)] == [5.0] * 8


@pytest.mark.e2e
def test_a_killed_worker_is_replaced_and_its_upload_resumes_on_another(
    server_factory: Callable[..., LiveServer], make_token: Token, tmp_path: Path
) -> None:
    size = 8 * MIB
    path, sha = random_file(tmp_path / "lecture.bin", size)
    token = make_token()
    # A short lock TTL: the killed worker cannot release its lock, so it must expire.
    server, first, second = two_workers(server_factory, UPLOAD_LOCK_TTL="2")
    upload_id = create(server, token, size)
    url = f"{server.url}/files/{upload_id}"

    os.kill(first, signal.SIGSTOP)  # so the body goes to the second worker
    try:
        slow = SlowPatch(url, token, 0, path.read_bytes(), pause_at=size // 2).start()
        wait_until(lambda: head_offset(server, token, upload_id) > 0, "bytes reach the disk")
        os.kill(second, signal.SIGKILL)
    finally:
        os.kill(first, signal.SIGCONT)
    slow.finish()
    assert slow.response is None and slow.error is not None

    stored = head_offset(server, token, upload_id)
    assert 0 < stored <= slow.sent
    uploader = uploader_client(server, token).uploader(
        str(path), url=url, chunk_size=2 * MIB, retries=40, retry_delay=0.25
    )
    assert uploader.offset == stored
    uploader.upload()
    assert downloaded_sha256(server, upload_id) == sha
    # The supervisor put a new worker in the killed one's place.
    wait_until(lambda: len(worker_pids(server)) == 2, "a new worker runs")
    assert second not in worker_pids(server) and first in worker_pids(server)


def test_server_workers_setting() -> None:
    assert Settings.from_env({"UPLOAD_SERVER_WORKERS": "3"}).serve_processes == 3
    assert Settings.from_env({}).serve_processes == usable_cpus()
    with pytest.raises(SystemExit, match="UPLOAD_SERVER_WORKERS must be 0"):
        _ = Settings.from_env({"UPLOAD_SERVER_WORKERS": "-1"}).serve_processes


def test_one_process_per_cpu_counts_a_containers_cpu_quota(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == cpus  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == cpus
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU still needs a process
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{100000 * cpus + 1} 100000\n")
    assert usable_cpus(tmp_path) == cpus  # a quota above the cpuset: the cpuset
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(v1) == cpus
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert usable_cpus(v1) == 1
