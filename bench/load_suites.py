"""Many clients at once: concurrent uploads with HEADs timed meanwhile, status polling
against a bare Starlette endpoint, and scaling with `serve --workers N`."""

from __future__ import annotations

import contextlib

from . import client, load, procs
from .figures import Figure
from .harness import GIB, MB, MIB, Bench


# -- many uploads at once ---------------------------------------------------------
def bursts(bench: Bench, servers: dict[str, procs.Proc]) -> dict[str, load.Pooled]:
    """Rounds of `concurrent` uploads at once against each server in turn, HEADs timed
    meanwhile, each round right after one upload alone of the single-upload size and
    the same uploads one after another.

    The two sides of "aggregate vs one upload alone" are measured side by side:
    taken minutes apart (the single suite's figure) they saw different machines,
    as these shared cores swing by a quarter from one minute to the next.
    A first burst of small uploads warms up (pools, threads, JITs fill on it,
    as on any server that has been up a while) and is not counted.
    """
    p = bench.params
    span = bench.source.stat().st_size

    def burst(proc: procs.Proc, size: int) -> load.ConcurrentResult:
        base, token = bench.target(proc)
        return load.concurrent_uploads(proc.port, base, token, bench.fd, p.concurrent, size, span)

    def sequence(proc: procs.Proc) -> float:
        base, token = bench.target(proc)
        return load.one_at_a_time(
            proc.port, base, token, bench.fd, SEQUENTIAL, p.concurrent_size, span
        )

    for proc in servers.values():
        burst(proc, MB)
    rounds: dict[str, list[load.ConcurrentResult]] = {name: [] for name in servers}
    singles: dict[str, list[float]] = {name: [] for name in servers}
    sequences: dict[str, list[float]] = {name: [] for name in servers}
    for i in range(p.concurrent_repeats):
        bench.log(f"{p.concurrent} concurrent uploads, round {i + 1}/{p.concurrent_repeats}")
        for name, proc in servers.items():
            singles[name].append(p.size / bench.upload(proc, p.size)[0] / MB)
            sequences[name].append(sequence(proc))
            bench.drop_files(proc)
            rounds[name].append(burst(proc, p.concurrent_size))
            bench.drop_files(proc)
    return {name: load.pooled(rounds[name], singles[name], sequences[name]) for name in servers}


# The same uploads one after another: what each upload's own requests cost
# (creation, locks, status records), without concurrency.
SEQUENTIAL = 20


def concurrency(bench: Bench) -> None:
    p = bench.params
    section = (
        f"{p.concurrent} concurrent uploads of {p.concurrent_size // MB} MB (one PATCH each; "
        f"median of {p.concurrent_repeats} rounds after a warm-up, HEADs of all rounds)"
    )
    alone = f"one {_size(p.size)} upload alone before each round (median)"
    with bench.each_mode() as servers, bench.peer() as peer_proc, bench.bare() as bare_proc:
        results = bursts(bench, {**servers, "peer": peer_proc, "bare": bare_proc})
    peer, bare = results["peer"], results["bare"]
    for mode in bench.modes:
        ours = results[mode]
        head_p99 = load.percentile(ours.head_ms, 99)
        bench.figures += [
            Figure(
                section,
                "aggregate throughput vs @tus/server",
                ours.mb_per_s,
                "MB/s",
                "@tus/server",
                peer.mb_per_s,
                samples=ours.rates,
                reference_samples=peer.rates,
                fast_path=mode,
            ),
            Figure(
                section,
                "aggregate throughput vs one upload alone",
                ours.mb_per_s,
                "MB/s",
                alone,
                ours.single_mb_s,
                ">= 0.8x",
                ours.mb_per_s >= 0.8 * ours.single_mb_s,
                note="the single suite's figure, minutes earlier: "
                + _single_note(bench.single_mb_s.get(mode)),
                samples=ours.rates,
                reference_samples=ours.singles,
                fast_path=mode,
            ),
            Figure(
                section,
                "aggregate throughput vs the same uploads one at a time",
                ours.mb_per_s,
                "MB/s",
                f"{SEQUENTIAL} uploads of {p.concurrent_size // MB} MB one after another (median)",
                ours.sequential_mb_s,
                note="concurrency's own cost; the gap to one big upload is each upload's requests",
                fast_path=mode,
            ),
            Figure(
                section,
                "aggregate throughput vs the bare splice responder",
                ours.mb_per_s,
                "MB/s",
                "bench/bare_splice.py",
                bare.mb_per_s,
                fast_path=mode,
            ),
            Figure(
                section,
                "failed uploads",
                ours.errors,
                "",
                "@tus/server",
                peer.errors,
                "0",
                ours.errors == 0,
                fast_path=mode,
            ),
            Figure(
                section,
                "HEAD p99 during the load",
                head_p99,
                "ms",
                "@tus/server",
                load.percentile(peer.head_ms, 99),
                "< 50 ms",
                head_p99 < 50,
                note=f"{len(ours.head_ms)} HEADs, p50 {load.percentile(ours.head_ms, 50):.1f} ms, "
                f"{ours.head_errors} failed",
                fast_path=mode,
            ),
        ]
    bench.figures.append(
        Figure(
            section,
            "the bare splice responder: aggregate vs its one upload alone",
            bare.mb_per_s,
            "MB/s",
            alone,
            bare.single_mb_s,
            note="what this machine's cores, kernel and clients allow: the 0.8x target's ceiling",
        )
    )


# -- status polling -------------------------------------------------------------------
def status_target(bench: Bench, proc: procs.Proc) -> tuple[str, dict[str, str]]:
    with client.Connection(proc.port) as conn:
        path = client.create(conn, "/files/", bench.token, 1048576)
    upload_id = path.rsplit("/", 1)[1]
    return f"/v1/uploads/{upload_id}", {"Authorization": f"Bearer {procs.API_KEY}"}


def polling(bench: Bench) -> None:
    p = bench.params
    section = f"Status polling, {p.pollers} concurrent keep-alive pollers, {p.poll_seconds:g} s"
    mine: dict[str, load.PollResult] = {}
    for mode in bench.modes:
        bench.log(f"status polling, fast path {mode}")
        with bench.ours(mode) as ours:
            path, headers = status_target(bench, ours)
            mine[mode] = load.poll(ours.port, path, headers, p.pollers, p.poll_seconds)
    with procs.running(procs.bare_starlette_proc()) as bare:
        ref = load.poll(bare.port, "/v1/uploads/x", {}, p.pollers, p.poll_seconds)
    for mode, result in mine.items():
        bench.figures += [
            Figure(
                section,
                "GET /v1/uploads/{id} requests per second",
                result.rps,
                "req/s",
                "bare Starlette JSON endpoint",
                ref.rps,
                note=f"{result.errors} errors",
                fast_path=mode,
            ),
            Figure(
                section,
                "p99 latency",
                load.percentile(result.latencies_ms, 99),
                "ms",
                "bare Starlette JSON endpoint",
                load.percentile(ref.latencies_ms, 99),
                note=f"p50 {load.percentile(result.latencies_ms, 50):.1f} ms vs "
                f"{load.percentile(ref.latencies_ms, 50):.1f} ms",
                fast_path=mode,
            ),
        ]


# -- uvicorn worker processes ----------------------------------------------------
def workers(bench: Bench) -> None:
    """With the first fast path mode only: this is about the machine's cores."""
    p = bench.params
    mode = bench.modes[0]
    section = "Scaling with `serve --workers N` on this machine"
    with contextlib.ExitStack() as stack:
        servers = {str(n): stack.enter_context(bench.ours(mode, workers=n)) for n in p.workers}
        bench.log(f"--workers {', '.join(servers)}")
        results = {int(key): r for key, r in bursts(bench, servers).items()}
        polls: dict[int, float] = {}
        for key, proc in servers.items():
            path, headers = status_target(bench, proc)
            polls[int(key)] = load.poll(proc.port, path, headers, p.pollers, p.poll_seconds).rps
    uploads = {n: r.mb_per_s for n, r in results.items()}
    alone = {n: r.single_mb_s for n, r in results.items()}
    failed = {n: r.errors for n, r in results.items()}
    head_p99 = {n: load.percentile(r.head_ms, 99) for n, r in results.items()}
    one = p.workers[0]
    for n in p.workers[1:]:
        bench.figures += [
            Figure(
                section,
                f"{p.concurrent} x {p.concurrent_size // MB} MB uploads, N={n}",
                uploads[n],
                "MB/s",
                f"N={one}",
                uploads[one],
                note=f"failed uploads: {failed[n]} at N={n}, {failed[one]} at N={one}",
                fast_path=mode,
            ),
            Figure(
                section,
                f"{p.concurrent} x {p.concurrent_size // MB} MB uploads, N={n}, "
                "vs one upload alone",
                uploads[n],
                "MB/s",
                f"one {_size(p.size)} upload alone before each round, N={n} (median)",
                alone[n],
                note="one process per CPU is the default: the section above",
                fast_path=mode,
            ),
            Figure(
                section,
                f"status polling, N={n}",
                polls[n],
                "req/s",
                f"N={one}",
                polls[one],
                fast_path=mode,
            ),
            Figure(
                section,
                f"HEAD p99 during the uploads, N={n}",
                head_p99[n],
                "ms",
                f"N={one}",
                head_p99[one],
                note="the 50 ms target is the default's (one process per CPU), above",
                fast_path=mode,
            ),
        ]


def _size(size: int) -> str:
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size // MIB} MiB"


def _single_note(mb_s: float | None) -> str:
    return "not run" if mb_s is None else f"{mb_s:,.0f} MB/s"
