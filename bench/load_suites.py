"""Many clients at once: concurrent uploads with HEADs timed meanwhile, status polling
against a bare Starlette endpoint, and scaling with `serve --workers N`."""

from __future__ import annotations

from . import client, load, procs
from .harness import GIB, MB, MIB, Bench
from .report import Figure


# -- many uploads at once ---------------------------------------------------------
def bursts(bench: Bench, proc: procs.Proc) -> load.Pooled:
    """Rounds of `concurrent` uploads at once against `proc`, HEADs timed meanwhile,
    each round right after one upload alone of the single-upload size.

    The two sides of "aggregate vs one upload alone" are measured side by side:
    taken minutes apart (the single suite's figure) they saw different machines,
    as these shared cores swing by a quarter from one minute to the next.
    A first burst of small uploads warms up (pools, threads, JITs fill on it,
    as on any server that has been up a while) and is not counted.
    """
    p = bench.params
    base, token = bench.target(proc)

    span = bench.source.stat().st_size

    def burst(size: int) -> load.ConcurrentResult:
        return load.concurrent_uploads(proc.port, base, token, bench.fd, p.concurrent, size, span)

    burst(MB)
    rounds, singles, sequences = [], [], []
    for _ in range(p.concurrent_repeats):
        singles.append(p.size / bench.upload(proc, p.size)[0] / MB)
        sequences.append(
            load.one_at_a_time(
                proc.port, base, token, bench.fd, SEQUENTIAL, p.concurrent_size, span
            )
        )
        bench.drop_files(proc)
        rounds.append(burst(p.concurrent_size))
        bench.drop_files(proc)
    return load.pooled(rounds, singles, sequences)


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
    results: dict[str, load.Pooled] = {}
    for name, ctx in (("ours", bench.ours), ("peer", bench.peer), ("bare", bench.bare)):
        bench.log(f"{p.concurrent} concurrent uploads against {name}")
        with ctx() as proc:
            results[name] = bursts(bench, proc)
    ours, peer, bare = results["ours"], results["peer"], results["bare"]
    bench.figures += [
        Figure(
            section,
            "aggregate throughput vs @tus/server",
            ours.mb_per_s,
            "MB/s",
            "@tus/server",
            peer.mb_per_s,
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
            note=f"the single suite's figure, minutes earlier: {_single_note(bench.single_mb_s)}",
            samples=ours.rates,
            reference_samples=ours.singles,
        ),
        Figure(
            section,
            "aggregate throughput vs the same uploads one at a time",
            ours.mb_per_s,
            "MB/s",
            f"{SEQUENTIAL} uploads of {p.concurrent_size // MB} MB one after another (median)",
            ours.sequential_mb_s,
            note="concurrency's own cost; the gap to one big upload is each upload's requests",
        ),
        Figure(
            section,
            "aggregate throughput vs the bare splice responder",
            ours.mb_per_s,
            "MB/s",
            "bench/bare_splice.py",
            bare.mb_per_s,
        ),
        Figure(
            section,
            "the bare splice responder: aggregate vs its one upload alone",
            bare.mb_per_s,
            "MB/s",
            alone,
            bare.single_mb_s,
            note="what this machine's cores, kernel and clients allow: the 0.8x target's ceiling",
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
        ),
        Figure(
            section,
            "HEAD p99 during the load",
            load.percentile(ours.head_ms, 99),
            "ms",
            "@tus/server",
            load.percentile(peer.head_ms, 99),
            "< 50 ms",
            load.percentile(ours.head_ms, 99) < 50,
            note=f"{len(ours.head_ms)} HEADs, p50 {load.percentile(ours.head_ms, 50):.1f} ms, "
            f"{ours.head_errors} failed",
        ),
    ]


# -- status polling -------------------------------------------------------------------
def status_target(bench: Bench, proc: procs.Proc) -> tuple[str, dict[str, str]]:
    with client.Connection(proc.port) as conn:
        path = client.create(conn, "/files/", bench.token, 1048576)
    upload_id = path.rsplit("/", 1)[1]
    return f"/v1/uploads/{upload_id}", {"Authorization": f"Bearer {procs.API_KEY}"}


def polling(bench: Bench) -> None:
    p = bench.params
    section = f"Status polling, {p.pollers} concurrent keep-alive pollers, {p.poll_seconds:g} s"
    bench.log("status polling")
    with bench.ours() as ours:
        path, headers = status_target(bench, ours)
        mine = load.poll(ours.port, path, headers, p.pollers, p.poll_seconds)
    with procs.running(procs.bare_starlette_proc()) as bare:
        ref = load.poll(bare.port, "/v1/uploads/x", {}, p.pollers, p.poll_seconds)
    bench.figures += [
        Figure(
            section,
            "GET /v1/uploads/{id} requests per second",
            mine.rps,
            "req/s",
            "bare Starlette JSON endpoint",
            ref.rps,
            note=f"{mine.errors} errors",
        ),
        Figure(
            section,
            "p99 latency",
            load.percentile(mine.latencies_ms, 99),
            "ms",
            "bare Starlette JSON endpoint",
            load.percentile(ref.latencies_ms, 99),
            note=f"p50 {load.percentile(mine.latencies_ms, 50):.1f} ms vs "
            f"{load.percentile(ref.latencies_ms, 50):.1f} ms",
        ),
    ]


# -- uvicorn worker processes ----------------------------------------------------
def workers(bench: Bench) -> None:
    p = bench.params
    section = "Scaling with `serve --workers N` on this machine"
    uploads: dict[int, float] = {}
    alone: dict[int, float] = {}
    failed: dict[int, int] = {}
    polls: dict[int, float] = {}
    head_p99: dict[int, float] = {}
    for n in p.workers:
        bench.log(f"--workers {n}")
        with bench.ours(workers=n) as proc:
            r = bursts(bench, proc)
            uploads[n] = r.mb_per_s
            alone[n] = r.single_mb_s
            failed[n] = r.errors
            head_p99[n] = load.percentile(r.head_ms, 99) if r.head_ms else float("nan")
            path, headers = status_target(bench, proc)
            polls[n] = load.poll(proc.port, path, headers, p.pollers, p.poll_seconds).rps
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
            ),
            Figure(section, f"status polling, N={n}", polls[n], "req/s", f"N={one}", polls[one]),
            Figure(
                section,
                f"HEAD p99 during the uploads, N={n}",
                head_p99[n],
                "ms",
                f"N={one}",
                head_p99[one],
                note="the 50 ms target is the default's (one process per CPU), above",
            ),
        ]


def _size(size: int) -> str:
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size // MIB} MiB"


def _single_note(mb_s: float | None) -> str:
    return "not run" if mb_s is None else f"{mb_s:,.0f} MB/s"
