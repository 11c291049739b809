"""Where a run's figures go: bench/results/latest.json and latest.md, and, after a full
run, docs/performance.md (bench/method.md, then the same tables, then the latest
time-to-playable table, bench/results/playable.md, which `bench.playable_bench` writes)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from . import tables
from .figures import Figure

METHOD = Path(__file__).parent / "method.md"
RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs" / "performance.md"


def write(
    figures: list[Figure],
    info: dict[str, object],
    out_dir: Path,
    argv: list[str],
    docs: Path | None = None,
) -> Path:
    """Write the result files (and `docs`, when given); returns latest.md's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {**info, "load_average_at_end": os.getloadavg()[0]}
    command = " ".join(["python -m bench", *argv])
    payload = {
        "machine": info,
        "command": command,
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
    }
    (out_dir / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = out_dir / "latest.md"
    md.write_text("# Benchmark results\n\n" + tables.results(figures, info, command))
    if docs is not None:
        docs.write_text(performance_page(figures, info, command))
    return md


def performance_page(figures: list[Figure], info: dict[str, object], command: str) -> str:
    page = (
        "<!-- Written by `python -m bench` (bench/report.py) from bench/method.md and the "
        "runs' figures: edit those, not this file. -->\n\n"
        + METHOD.read_text().rstrip()
        + "\n\n## Latest results\n\n"
        + tables.results(figures, info, command, level=3)
    )
    playable = RESULTS / "playable.md"
    if playable.exists():  # its own bench's latest run (python -m bench.playable_bench)
        body = playable.read_text().split("\n", 1)[1].strip()
        page = page.rstrip() + "\n\n### Time to playable\n\n" + body + "\n"
    return page


def rewrite_docs(docs: Path = DOCS) -> Path:
    """docs/performance.md again from the main bench's latest full run and the latest
    time-to-playable run, for when only the latter ran."""
    latest = json.loads((RESULTS / "latest.json").read_text())
    names = {f.name for f in fields(Figure)}
    figures = [Figure(**{k: v for k, v in f.items() if k in names}) for f in latest["figures"]]
    docs.write_text(performance_page(figures, latest["machine"], latest["command"]))
    return docs
