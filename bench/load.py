"""Load generators: many uploads at once (threads + sendfile) with a HEAD prober, and
an asyncio poller holding hundreds of keep-alive connections."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from . import client


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class ConcurrentResult:
    uploads: int
    size: int
    seconds: float
    errors: int
    head_ms: list[float] = field(default_factory=list)
    head_errors: int = 0

    @property
    def mb_per_s(self) -> float:
        return (self.uploads - self.errors) * self.size / self.seconds / 1e6


@dataclass
class Pooled:
    """Several rounds as one figure: the median round's rate, every round's errors and
    HEADs, and the median of the uploads alone measured between the rounds."""

    rates: list[float]  # MB/s of each round
    errors: int
    head_ms: list[float]
    head_errors: int
    singles: list[float]  # MB/s of each upload alone
    sequences: list[float]  # MB/s of the same uploads one after another

    @property
    def mb_per_s(self) -> float:
        return _middle(self.rates)

    @property
    def single_mb_s(self) -> float:
        return _middle(self.singles)

    @property
    def sequential_mb_s(self) -> float:
        return _middle(self.sequences)


def _middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def pooled(rounds: list[ConcurrentResult], singles: list[float], sequences: list[float]) -> Pooled:
    return Pooled(
        [r.mb_per_s for r in rounds],
        sum(r.errors for r in rounds),
        [ms for r in rounds for ms in r.head_ms],
        sum(r.head_errors for r in rounds),
        singles,
        sequences,
    )


def concurrent_uploads(
    port: int, base: str, token: str | None, fd: int, uploads: int, size: int, span: int
) -> ConcurrentResult:
    """`uploads` uploads of `size` bytes at once, each one PATCH, while HEAD is timed."""
    with client.Connection(port) as conn:
        probe_path = client.create(conn, base, token, 1024)

    def one(i: int) -> bool:
        try:
            offset = (i * size) % max(1, span - size)
            with client.Connection(port) as conn:
                path = client.create(conn, base, token, size)
                client.patch(conn, path, token, 0, (fd, offset, size, 1))
            return True
        except Exception:
            return False

    # The prober is a process of its own: in this one it would wait for the GIL
    # behind a hundred upload threads, and time this client instead of the server.
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    results, sink = spawn.Pipe(duplex=False)
    prober = spawn.Process(target=probe_heads, args=(port, probe_path, token, stop, sink))
    prober.start()
    if not results.poll(30):  # the prober says when its connection is up
        raise RuntimeError("the HEAD prober did not start")
    results.recv()
    started = time.perf_counter()
    with ThreadPoolExecutor(uploads) as pool:
        ok = list(pool.map(one, range(uploads)))
    seconds = time.perf_counter() - started
    stop.set()
    head_ms, head_errors = results.recv()
    prober.join()
    return ConcurrentResult(uploads, size, seconds, ok.count(False), head_ms, head_errors)


def one_at_a_time(
    port: int, base: str, token: str | None, fd: int, uploads: int, size: int, span: int
) -> float:
    """MB/s of `uploads` uploads of `size` bytes (POST + one PATCH each), one after another."""
    started = time.perf_counter()
    for i in range(uploads):
        offset = (i * size) % max(1, span - size)
        with client.Connection(port) as conn:
            path = client.create(conn, base, token, size)
            client.patch(conn, path, token, 0, (fd, offset, size, 1))
    return uploads * size / (time.perf_counter() - started) / 1e6


def probe_heads(port: int, path: str, token: str | None, stop: Any, sink: Connection) -> None:
    """HEAD `path` every 10 ms until `stop`; sends back (latencies in ms, failures)."""
    head_ms: list[float] = []
    errors = 0
    with client.Connection(port) as conn:
        sink.send("ready")
        while not stop.is_set():
            t0 = time.perf_counter()
            r = conn.request("HEAD", path, client.tus_headers(token))
            if r.status == 200:
                head_ms.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1
            stop.wait(0.01)
    sink.send((head_ms, errors))


@dataclass
class PollResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _poll(
    port: int, path: str, headers: dict[str, str], conns: int, seconds: float
) -> PollResult:
    raw = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    raw += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(raw) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    warmup_until = time.perf_counter() + min(1.0, seconds / 4)
    deadline = warmup_until + seconds

    async def poller() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if t0 >= warmup_until:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if status != 200:
                        errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(poller() for _ in range(conns)))
    return PollResult(len(latencies), errors, seconds, latencies)


def poll(port: int, path: str, headers: dict[str, str], conns: int, seconds: float) -> PollResult:
    """`conns` keep-alive connections GETting `path` back to back for `seconds`."""
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_poll(port, path, headers, conns, seconds))
    except ImportError:
        return asyncio.run(_poll(port, path, headers, conns, seconds))
