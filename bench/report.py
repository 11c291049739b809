"""Figures and how they are written: every figure an absolute and a ratio to its reference."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from upload_service.core.settings import usable_cpus


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    reference_name: str = ""
    reference: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    reference_samples: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.reference in (None, 0):
            return None
        return self.value / self.reference


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = (
        f"{value:,.0f}"
        if abs(value) >= 100
        else f"{value:,.2f}"
        if abs(value) < 10
        else f"{value:,.1f}"
    )
    return f"{text} {unit}".strip()


def machine() -> dict[str, object]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    node = shutil.which("node")
    peer_pkg = Path(__file__).parent / "node_modules" / "@tus" / "server" / "package.json"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "httptools": version("httptools"),
        "starlette": version("starlette"),
        "node": subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else "not installed",
        "tus_server": json.loads(peer_pkg.read_text())["version"] if peer_pkg.exists() else "?",
        "load_average_at_start": os.getloadavg()[0],
        "server_processes": usable_cpus(),
    }


def write(figures: list[Figure], info: dict[str, object], out_dir: Path, argv: list[str]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {**info, "load_average_at_end": os.getloadavg()[0]}
    payload = {
        "machine": info,
        "command": " ".join(["python -m bench", *argv]),
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
    }
    (out_dir / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = out_dir / "latest.md"
    md.write_text(render(figures, info, payload["command"]))  # type: ignore[arg-type]
    return md


def render(figures: list[Figure], info: dict[str, object], command: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"`{command}` on {info['date']}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM, "
        f"Linux {info['kernel']}; Python {info['python']}, uvicorn {info['uvicorn']} "
        f"(uvloop {info['uvloop']}, httptools {info['httptools']}), Starlette {info['starlette']}; "
        f"Node {info['node']}, @tus/server {info['tus_server']}. Load average "
        f"{info['load_average_at_start']:.2f} at the start, {info['load_average_at_end']:.2f} "
        "at the end (the cores are shared: figures are medians of the repeats, best in brackets).",
        "",
        "Every server, client and Redis ran on this one machine over loopback; MB = 10^6 bytes. "
        f"This service ran as configured by default, {info.get('server_processes', '?')} "
        "processes (one per CPU), and so did the bare references, unless a row says otherwise.",
        "",
    ]
    section = None
    for f in figures:
        if f.section != section:
            section = f.section
            lines += [
                f"## {section}",
                "",
                "| measure | this service | reference | ratio | target | met |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
        value = _fmt(f.value, f.unit)
        if len(f.samples) > 1:
            best = max(f.samples) if f.unit.endswith("/s") else min(f.samples)
            value += f" ({_fmt(best)})"
        ref = "–"
        if f.reference is not None:
            ref = f"{f.reference_name}: {_fmt(f.reference, f.unit)}"
            if len(f.reference_samples) > 1:
                best = (
                    max(f.reference_samples) if f.unit.endswith("/s") else min(f.reference_samples)
                )
                ref += f" ({_fmt(best)})"
        elif f.reference_name:
            ref = f.reference_name
        ratio = "–" if f.ratio is None else f"{f.ratio:.2f}x"
        met = {True: "yes", False: "**no**", None: "–"}[f.met]
        name = f.name + (f" — {f.note}" if f.note else "")
        lines.append(f"| {name} | {value} | {ref} | {ratio} | {f.target or '–'} | {met} |")
        if f is figures[-1] or figures[figures.index(f) + 1].section != section:
            lines.append("")
    return "\n".join(lines)
