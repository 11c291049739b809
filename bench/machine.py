"""What the run ran on: the machine, the versions of everything measured, the load."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from upload_service.core.settings import usable_cpus

NODE_MODULES = Path(__file__).parent / "node_modules"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def _node_package(name: str) -> str:
    package = NODE_MODULES / name / "package.json"
    return str(json.loads(package.read_text())["version"]) if package.exists() else "?"


def describe() -> dict[str, object]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    node = shutil.which("node")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvicorn": _version("uvicorn"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "starlette": _version("starlette"),
        "node": subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else "not installed",
        "tus_server": _node_package("@tus/server"),
        "undici": _node_package("undici"),
        "load_average_at_start": os.getloadavg()[0],
        "server_processes": usable_cpus(),
    }
