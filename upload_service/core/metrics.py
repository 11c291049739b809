"""Prometheus metrics, defined once per process, added up across `serve`'s workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# prometheus_client's own switch: set, every process writes its values to files there.
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# `serve`'s own shared directories: this prefix, then the pid of the `serve` that made it.
SHARED_DIR_PREFIX = "upload-service-metrics-"

REQUESTS = Counter(
    "upload_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "upload_http_request_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BYTES_RECEIVED = Counter("upload_bytes_received_total", "Upload bytes stored")
BYTES_SPLICED = Counter(
    "upload_bytes_spliced_total", "Upload bytes moved from socket to file inside the kernel"
)
UPLOADS_CREATED = Counter("upload_created_total", "Uploads created")
UPLOADS_FINISHED = Counter("upload_finished_total", "Uploads whose last byte arrived")


@contextlib.contextmanager
def shared_by_processes() -> Iterator[None]:
    """For `serve` with several workers: each keeps its counts in files in one directory
    (set before they start, so they inherit it) and /metrics adds them all up, whichever
    worker a scrape reaches. A directory the operator set is theirs, and kept."""
    if os.environ.get(SHARED_DIR_ENV):
        yield
        return
    remove_orphaned_dirs(Path(tempfile.gettempdir()))
    directory = tempfile.mkdtemp(prefix=f"{SHARED_DIR_PREFIX}{os.getpid()}-")
    os.environ[SHARED_DIR_ENV] = directory
    try:
        yield
    finally:
        del os.environ[SHARED_DIR_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def remove_orphaned_dirs(parent: Path) -> list[Path]:
    """Remove the shared directories of `serve`s that are gone: a SIGKILLed one never
    ran its cleanup. A directory whose `serve` still runs (its pid lives) is kept, and so
    is one not named by a pid: it is not one of ours to judge."""
    removed = []
    for directory in parent.glob(f"{SHARED_DIR_PREFIX}*"):
        pid = directory.name[len(SHARED_DIR_PREFIX) :].split("-", 1)[0]
        if not directory.is_dir() or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def exposition() -> bytes:
    """The text /metrics answers: this process's metrics, or every worker's summed."""
    if not os.environ.get(SHARED_DIR_ENV):
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
