"""Small uploads per second: each a POST and one PATCH of 64 KiB, 64 at a time, from a
Node client (bench/small_uploads.mjs) that is much faster than the servers. With so
little body per upload, what a server does per upload (records, lock, status, the
pipeline's message, logs) is what is measured, and the server CPU time per upload
is reported beside the rate: on shared cores it moves less than the rate does."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from . import procs
from .figures import Figure, median
from .harness import Bench

CLIENT = procs.BENCH_DIR / "small_uploads.mjs"


@dataclass
class Round:
    uploads: int
    seconds: float
    failed: int
    client_cpu: float  # seconds, the Node client's
    server_cpu: float  # seconds, the server's processes'
    redis_cpu: float  # seconds, Redis's (only this service uses it)

    @property
    def rate(self) -> float:
        return (self.uploads - self.failed) / self.seconds

    def ms_per_upload(self, seconds: float) -> float:
        return seconds / self.uploads * 1000


def measure(bench: Bench, proc: procs.Proc) -> Round:
    p = bench.params
    base, token = bench.target(proc)
    argv = ["node", str(CLIENT), f"http://127.0.0.1:{proc.port}{base}", token or "-"]
    argv += [str(n) for n in (p.small_warmup, p.small_uploads, p.small_concurrency, p.small_size)]
    with subprocess.Popen(
        argv, cwd=procs.BENCH_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as client:
        assert client.stdin is not None and client.stdout is not None
        if client.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{CLIENT.name} failed during its warm-up")
        server, redis = proc.cpu_seconds(), bench.redis.cpu_seconds()
        client.stdin.write("go\n")
        client.stdin.flush()
        result = json.loads(client.stdout.readline())
        server, redis = proc.cpu_seconds() - server, bench.redis.cpu_seconds() - redis
    if client.returncode:
        raise RuntimeError(f"{CLIENT.name} exited with {client.returncode}")
    bench.drop_files(proc)
    return Round(
        result["uploads"],
        result["seconds"],
        result["failed"],
        result["client_cpu_seconds"],
        server,
        redis,
    )


def small(bench: Bench) -> None:
    p = bench.params
    section = (
        f"Small uploads per second: POST + one {p.small_size // 1024} KiB PATCH each, "
        f"{p.small_concurrency} at a time, {p.small_uploads} uploads a round "
        f"(median of {p.small_repeats})"
    )
    rounds: dict[str, list[Round]] = {}
    with bench.each_mode() as ours, bench.peer() as peer, bench.bare() as bare:
        servers = {**ours, "peer": peer, "bare": bare}
        for i in range(p.small_repeats):
            bench.log(f"small uploads round {i + 1}/{p.small_repeats}")
            for name, proc in servers.items():
                rounds.setdefault(name, []).append(measure(bench, proc))

    def rates(name: str) -> list[float]:
        return [r.rate for r in rounds[name]]

    def cpu_ms(name: str) -> list[float]:
        return [r.ms_per_upload(r.server_cpu + r.redis_cpu) for r in rounds[name]]

    for mode in ours:
        mine = rounds[mode]
        redis_ms = median([r.ms_per_upload(r.redis_cpu) for r in mine])
        bench.figures += [
            Figure(
                section,
                "uploads per second vs @tus/server",
                median(rates(mode)),
                "uploads/s",
                "@tus/server",
                median(rates("peer")),
                samples=rates(mode),
                reference_samples=rates("peer"),
                fast_path=mode,
            ),
            Figure(
                section,
                "server CPU per upload, Redis included",
                median(cpu_ms(mode)),
                "ms",
                "@tus/server",
                median(cpu_ms("peer")),
                note=f"Redis {redis_ms:.2f} ms of it",
                samples=cpu_ms(mode),
                reference_samples=cpu_ms("peer"),
                fast_path=mode,
            ),
            Figure(
                section,
                "failed uploads",
                sum(r.failed for r in mine),
                "",
                "@tus/server",
                sum(r.failed for r in rounds["peer"]),
                "0",
                all(r.failed == 0 for r in mine),
                fast_path=mode,
            ),
        ]
    fastest = max(median(rates(name)) for name in (*ours, "peer"))
    client_ms = median([r.ms_per_upload(r.client_cpu) for rs in rounds.values() for r in rs])
    bench.figures.append(
        Figure(
            section,
            "the same client against bench/bare_splice.py: its ceiling on this machine",
            median(rates("bare")),
            "uploads/s",
            "the fastest server above",
            fastest,
            ">= 2x",
            median(rates("bare")) >= 2 * fastest,
            note=f"the client's own CPU: {client_ms:.2f} ms per upload",
            samples=rates("bare"),
        )
    )
