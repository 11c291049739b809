"""`python -m bench` runs end to end (here its quickest suite that needs no npm peer,
with the fast path on and off side by side) and writes both result files: a refactor
that breaks the runner shows up here, not at the next measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
def test_the_bench_runner_measures_and_writes_its_tables(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "polling"]
        + ["--fast-path", "both", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    polls = {
        figure["fast_path"]: figure["value"]
        for figure in results["figures"]
        if figure["name"] == "GET /v1/uploads/{id} requests per second"
    }
    assert set(polls) == {"on", "off"}, results["figures"]
    assert all(figure["value"] > 0 for figure in results["figures"])
    assert results["machine"]["cores"] >= 1
    table = (tmp_path / "latest.md").read_text()
    assert "| measure | fast path on | fast path off | reference |" in table
    assert "| GET /v1/uploads/{id} requests per second" in table
