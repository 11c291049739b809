"""bench/locustfile.py drives a real server with real Locust: every kind of request
it makes is answered without a failure."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer

pytestmark = pytest.mark.one_path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = (
    "POST /files/",
    "PATCH /files/[id]",
    "HEAD /files/[id]",
    "DELETE /files/[id]",
    "GET /v1/uploads/[id]",
)


@pytest.mark.e2e
def test_the_locust_workload_runs_against_the_service_without_failures(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = os.environ | {
        "UPLOAD_TOKEN_SECRET": TOKEN_SECRET,
        "UPLOAD_API_KEY": API_KEY,
        "LOCUST_UPLOAD_SIZE": str(3 * 1024 * 1024),
        "LOCUST_CHUNK_SIZE": str(1024 * 1024),
    }
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py")]
        + ["--headless", "--users", "4", "--spawn-rate", "4", "--run-time", "8s"]
        + ["--host", live_server.url, "--csv", str(tmp_path / "run"), "--only-summary"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with open(tmp_path / "run_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    for name in EXPECTED:
        assert name in rows, f"{name} was never requested: {sorted(rows)}"
        assert int(rows[name]["Request Count"]) > 0
        assert int(rows[name]["Failure Count"]) == 0, name
