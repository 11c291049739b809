"""What every suite shares: the parameters, the running bench (servers, the source file,
the figures so far) and the source file's making."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import client, procs
from .figures import Figure

MB = 1000**2
MIB = 1024**2
GIB = 1024**3


@dataclass
class Params:
    size: int = GIB  # the single-upload file
    repeats: int = 3
    chunk: int = 8 * MIB
    rss_sizes: tuple[int, ...] = (100 * MB, GIB, 4 * GIB)
    latency_sizes: tuple[int, ...] = (MB, 100 * MB, GIB)
    latency_repeats: int = 3
    concurrent: int = 100
    concurrent_size: int = 20 * MB
    concurrent_repeats: int = 5
    pollers: int = 200
    poll_seconds: float = 8.0
    workers: tuple[int, ...] = (1, 2)
    small_uploads: int = 2000  # timed per server per round
    small_warmup: int = 256
    small_concurrency: int = 64
    small_size: int = 64 * 1024
    small_repeats: int = 3

    @classmethod
    def quick(cls) -> Params:
        return cls(
            size=256 * MIB,
            repeats=1,
            rss_sizes=(100 * MB, GIB),
            latency_sizes=(MB, 100 * MB),
            latency_repeats=2,
            concurrent=20,
            concurrent_repeats=1,
            pollers=200,
            poll_seconds=3.0,
            small_uploads=500,
            small_warmup=128,
            small_repeats=1,
        )


@dataclass
class Bench:
    params: Params
    tmp: Path
    redis: procs.Proc
    source: Path
    fd: int
    # UPLOAD_FAST_PATH of this service: the suites run each mode side by side,
    # except `workers`, which scales the first.
    modes: tuple[str, ...] = ("on", "off")
    token: str = field(default_factory=client.make_token)
    figures: list[Figure] = field(default_factory=list)
    # One upload alone, by fast path mode: set by `single`, read later.
    single_mb_s: dict[str, float] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def ours(
        self, fast_path: str | None = None, workers: int | None = None
    ) -> contextlib.AbstractContextManager[procs.Proc]:
        mode = fast_path or self.modes[0]
        return self._serving(
            f"ours-{mode}", lambda d: procs.service_proc(d, self.redis.port, mode, workers)
        )

    @contextlib.contextmanager
    def each_mode(self) -> Iterator[dict[str, procs.Proc]]:
        """This service once per fast path mode, all running at once."""
        with contextlib.ExitStack() as stack:
            yield {mode: stack.enter_context(self.ours(mode)) for mode in self.modes}

    def peer(self) -> contextlib.AbstractContextManager[procs.Proc]:
        return self._serving("peer", procs.tus_peer_proc)

    def bare(self) -> contextlib.AbstractContextManager[procs.Proc]:
        """The raw kernel path (bench/bare_splice.py): what this machine allows at best."""
        return self._serving("bare", procs.bare_splice_proc)

    @contextlib.contextmanager
    def _serving(self, name: str, make: Callable[[Path], procs.Proc]) -> Iterator[procs.Proc]:
        """A server on a fresh data directory; what it stored is emptied, not deleted,
        when it stops (see drop_files), and removed with the run's temp dir."""
        data = self.tmp / f"{name}-{time.monotonic_ns()}"
        data.mkdir()
        with procs.running(make(data)) as proc:
            yield proc
            self.drop_files(proc)

    def upload(self, proc: procs.Proc, size: int, **kw: object) -> tuple[float, client.Response]:
        base, token = self.target(proc)
        try:
            return client.upload(proc.port, base, token, self.fd, size, **kw)  # type: ignore[arg-type]
        finally:
            self.drop_files(proc)

    def target(self, proc: procs.Proc) -> tuple[str, str | None]:
        if proc.name.startswith(("@tus", "bare")):
            return "/files", None
        return "/files/", self.token

    def drop_files(self, proc: procs.Proc) -> None:
        """Empty the uploaded files: their bytes are not needed after timing.

        Emptied, not deleted: on ext4 without a journal (these machines' disk), every
        new file's inode is checked against each inode deleted in the last minute
        or more, so deleting a round's hundred files made the next round's file
        creations slower, and the next server's, by up to a millisecond each
        (perf: `recently_deleted` at a third of the server's CPU).
        """
        directory = Path(proc.argv[-1]) if proc.name.startswith(("@tus", "bare")) else None
        if directory is None:
            directory = Path(proc.env["UPLOAD_DATA_DIR"]) / "uploads"
        for f in directory.glob("*"):
            if f.is_file() and f.stat().st_size >= 64 * 1024:
                os.truncate(f, 0)


def make_source(path: Path, size: int) -> None:
    """Random bytes (incompressible), reused across runs when the size matches."""
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 8 * MIB)
            f.write(os.urandom(n))
            remaining -= n
