"""Where a run's figures go: bench/results/latest.json and latest.md, and, after a full
run, docs/performance.md (bench/method.md, then the same tables)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from . import tables
from .figures import Figure

METHOD = Path(__file__).parent / "method.md"


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
    return (
        "<!-- Written by `python -m bench` (bench/report.py) from bench/method.md and the "
        "run's figures: edit those, not this file. -->\n\n"
        + METHOD.read_text().rstrip()
        + "\n\n## Latest results\n\n"
        + tables.results(figures, info, command, level=3)
    )
