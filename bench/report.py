"""Where a run's figures go: bench/results/latest.json and latest.md."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from . import tables
from .figures import Figure


def write(
    figures: list[Figure],
    info: dict[str, object],
    out_dir: Path,
    argv: list[str],
) -> Path:
    """Write the result files; returns latest.md's path."""
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
    return md
