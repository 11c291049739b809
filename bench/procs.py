"""The processes a benchmark run starts: Redis, this service, the @tus/server peer,
a bare Starlette app. Each on a free loopback port, in a temp dir, stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from upload_service.core.settings import usable_cpus

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TOKEN_SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
API_KEY = "bench-api-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM and friends from /proc/<pid>/status, in bytes."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the parenthesised command name (which may hold spaces);
            # utime and stime are the 14th and 15th of the whole line.
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """One child process listening on `port`; `server_pids` are the ones serving requests."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def server_pids(self) -> list[int]:
        # uvicorn with several workers is a supervisor over them (and over
        # multiprocessing's resource tracker, which serves nothing).
        workers = [p for p in children_of(self.pid) if b"resource_tracker" not in _cmdline(p)]
        return workers or [self.pid]

    def peak_rss(self) -> int:
        """The largest peak of one serving process."""
        return max(proc_status(p).get("VmHWM", 0) for p in self.server_pids())

    def total_peak_rss(self) -> int:
        """Every process's peak added up, the supervisor's included."""
        return sum(proc_status(p).get("VmHWM", 0) for p in (self.pid, *children_of(self.pid)))

    def rss(self) -> int:
        return sum(proc_status(p).get("VmRSS", 0) for p in self.server_pids())

    def cpu_seconds(self) -> float:
        """User and system CPU time so far of the process and its children, threads included."""
        return sum(cpu_seconds(p) for p in (self.pid, *children_of(self.pid)))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def redis_proc(directory: Path) -> Proc:
    binary = shutil.which("redis-server")
    if not binary:
        raise SystemExit("redis-server is required for the benchmarks")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(directory)]
    return Proc("redis", argv, port)


def service_proc(
    data_dir: Path, redis_port: int, fast_path: str = "on", workers: int | None = None
) -> Proc:
    """`serve` as configured by default (one process per CPU), or with `workers`;
    `fast_path` is UPLOAD_FAST_PATH: the speed-ups ("on") or their stock counterparts."""
    port = free_port()
    argv = [sys.executable, "-m", "upload_service.cli", "serve", "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    env = {
        "UPLOAD_DATA_DIR": str(data_dir),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "UPLOAD_TOKEN_SECRET": TOKEN_SECRET,
        "UPLOAD_API_KEY": API_KEY,
        "UPLOAD_MAX_SIZE": str(64 * 1024**3),
        "UPLOAD_FAST_PATH": fast_path,
        # The per-user limits are for many users; the bench is one user creating
        # thousands of uploads a minute, as a load test of one tenant would be.
        "UPLOAD_MAX_UNFINISHED": "0",
        "UPLOAD_CREATION_RATE": "0",
    }
    name = f"upload-service (fast path {fast_path}, workers={workers or 'default'})"
    return Proc(name, argv, port, env)


def tus_peer_proc(data_dir: Path) -> Proc:
    if not (BENCH_DIR / "node_modules" / "@tus" / "server").is_dir():
        raise SystemExit("the peer is missing: run `npm install --prefix bench` first")
    port = free_port()
    argv = ["node", str(BENCH_DIR / "tus_peer.mjs"), str(port), str(data_dir)]
    return Proc("@tus/server", argv, port, cwd=BENCH_DIR)


def bare_splice_proc(data_dir: Path) -> Proc:
    port = free_port()
    processes = str(usable_cpus())  # as many as `serve` runs by default
    argv = [sys.executable, "-m", "bench.bare_splice", str(port), processes, str(data_dir)]
    return Proc("bare splice responder", argv, port)


def bare_starlette_proc() -> Proc:
    # Run exactly as `serve` runs uvicorn: same loop, same HTTP parser, no access
    # log, as many worker processes.
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('bench.bare_app:app', host='127.0.0.1', "
        f"port={port}, log_config=None, access_log=False, workers={usable_cpus()})"
    )
    return Proc("bare Starlette", [sys.executable, "-c", code], port)
