"""One upload at a time: throughput against @tus/server, dd and the bare splice
responder, peak memory by size, and the time from the last byte to the answer. Each
figure has its reference measured in the same run, with the same client."""

from __future__ import annotations

import subprocess
import time

from . import client, procs
from .figures import Figure, median
from .harness import GIB, MB, MIB, Bench


# -- single upload throughput -------------------------------------------------------
def curl_upload(bench: Bench, proc: procs.Proc, size: int) -> float:
    base, token = bench.target(proc)
    with client.Connection(proc.port) as conn:
        path = client.create(conn, base, token, size)
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH", "-T"]
    argv += [str(bench.source), f"http://127.0.0.1:{proc.port}{path}"]
    for header in ("Tus-Resumable: 1.0.0", "Upload-Offset: 0"):
        argv += ["-H", header]
    argv += ["-H", "Content-Type: application/offset+octet-stream", "-H", "Expect:"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - started
    bench.drop_files(proc)
    if out.strip() != "204":
        raise RuntimeError(f"curl -T got {out}")
    return elapsed


def dd_write(bench: Bench, block: int, size: int) -> float:
    out = bench.tmp / "dd.out"
    argv = ["dd", f"if={bench.source}", f"of={out}", f"bs={block}", f"count={size // block}"]
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    out.unlink()
    return elapsed


def single(bench: Bench) -> None:
    p = bench.params
    size = p.size
    assert bench.source.stat().st_size == size
    from upload_service.core.store.local import WRITE_BATCH

    runs: dict[str, list[float]] = {}

    def rate(key: str, seconds: float) -> None:
        runs.setdefault(key, []).append(size / seconds / MB)

    with bench.each_mode() as ours, bench.peer() as peer, bench.bare() as bare:
        servers = {**ours, "peer": peer}
        # Warm-up: first-touch page-cache pages and JITs cost the servers alike.
        for proc in (*servers.values(), bare):
            bench.upload(proc, size)
        for i in range(p.repeats):
            bench.log(f"single upload round {i + 1}/{p.repeats}")
            for name, proc in servers.items():
                rate(f"{name}-one", bench.upload(proc, size)[0])
                rate(f"{name}-chunks", bench.upload(proc, size, chunk=p.chunk)[0])
                rate(f"{name}-curl", curl_upload(bench, proc, size))
            rate("bare-one", bench.upload(bare, size)[0])
            rate("dd-batch", dd_write(bench, WRITE_BATCH, size))
            rate("dd-chunk", dd_write(bench, p.chunk, size))
        peaks = {mode: proc.peak_rss() for mode, proc in ours.items()}

    label = f"{size / GIB:g} GiB" if size >= GIB else f"{size // MIB} MiB"
    section = f"Single upload throughput ({label})"
    rows = [
        ("one PATCH, sendfile client", "one", "dd-batch", f"dd bs={WRITE_BATCH // MIB}M"),
        (
            f"{p.chunk // MIB} MiB PATCHes, sendfile client",
            "chunks",
            "dd-chunk",
            f"dd bs={p.chunk // MIB}M",
        ),
        ("one PATCH, curl -T", "curl", "dd-batch", f"dd bs={WRITE_BATCH // MIB}M"),
    ]
    for mode in ours:
        bench.single_mb_s[mode] = median(runs[f"{mode}-one"])
        for title, key, dd_key, dd_name in rows:
            ours_v, peer_v, dd_v = runs[f"{mode}-{key}"], runs[f"peer-{key}"], runs[dd_key]
            bench.figures += [
                Figure(
                    section,
                    f"{title} vs @tus/server",
                    median(ours_v),
                    "MB/s",
                    "@tus/server",
                    median(peer_v),
                    ">= 2x",
                    median(ours_v) >= 2 * median(peer_v),
                    samples=ours_v,
                    reference_samples=peer_v,
                    fast_path=mode,
                ),
                Figure(
                    section,
                    f"{title} vs raw disk write",
                    median(ours_v),
                    "MB/s",
                    dd_name,
                    median(dd_v),
                    ">= 0.5x",
                    median(ours_v) >= 0.5 * median(dd_v),
                    samples=ours_v,
                    reference_samples=dd_v,
                    fast_path=mode,
                ),
            ]
        bench.figures += [
            Figure(
                section,
                "one PATCH, sendfile client vs the bare splice responder",
                median(runs[f"{mode}-one"]),
                "MB/s",
                "bench/bare_splice.py",
                median(runs["bare-one"]),
                samples=runs[f"{mode}-one"],
                reference_samples=runs["bare-one"],
                fast_path=mode,
            ),
            Figure(
                section,
                "peak server RSS over all these uploads",
                peaks[mode] / MB,
                "MB",
                target="< 100 MB",
                met=peaks[mode] < 100 * MB,
                fast_path=mode,
            ),
        ]


# -- peak RSS by size -------------------------------------------------------------
def memory(bench: Bench) -> None:
    section = "Peak server RSS (VmHWM) by upload size, one PATCH, fresh server each, per process"
    source = bench.source.stat().st_size
    for size in bench.params.rss_sizes:
        repeat = max(1, size // source)
        piece = size // repeat
        assert piece <= source
        label = f"{size / GIB:g} GiB" if size >= GIB else f"{size / MB:g} MB"
        bench.log(f"peak RSS for {label}")
        with bench.peer() as proc:
            bench.upload(proc, piece, repeat=repeat)
            peer = proc.peak_rss()
        for mode in bench.modes:
            with bench.ours(mode) as proc:
                idle = proc.peak_rss()
                bench.upload(proc, piece, repeat=repeat)
                ours, processes = proc.peak_rss(), len(proc.server_pids())
                total = proc.total_peak_rss()
            bench.figures.append(
                Figure(
                    section,
                    f"{label} upload",
                    ours / MB,
                    "MB",
                    "@tus/server",
                    peer / MB,
                    "< 100 MB",
                    ours < 100 * MB,
                    note=f"the largest of {processes} server processes; idle {idle / MB:.0f} MB; "
                    f"all processes together {total / MB:.0f} MB",
                    fast_path=mode,
                )
            )


# -- last byte to response --------------------------------------------------------
def latency(bench: Bench) -> None:
    section = "Last byte to final response (one PATCH, 64 KiB client send buffer)"
    p = bench.params
    results: dict[tuple[str, int], list[float]] = {}
    with bench.each_mode() as ours, bench.peer() as peer:
        servers = {**ours, "peer": peer}
        for size in p.latency_sizes:
            bench.log(f"last-byte latency for {size} bytes")
            for _ in range(p.latency_repeats):
                for name, proc in servers.items():
                    _, r = bench.upload(proc, size, sndbuf=64 * 1024)
                    results.setdefault((name, size), []).append(
                        (r.answered_at - r.last_byte_at) * 1000
                    )
    smallest = p.latency_sizes[0]
    for mode in ours:
        base = median(results[(mode, smallest)])
        for size in p.latency_sizes:
            label = f"{size / GIB:g} GiB" if size >= GIB else f"{size / MB:g} MB"
            ours_v = results[(mode, size)]
            value = median(ours_v)
            bench.figures.append(
                Figure(
                    section,
                    f"{label} upload",
                    value,
                    "ms",
                    f"this service at {smallest // MB} MB",
                    base,
                    "same within noise",
                    # Within noise: at most a few ms more than the smallest upload's figure.
                    value <= base + 20,
                    samples=ours_v,
                    note=f"@tus/server {median(results[('peer', size)]):.1f} ms",
                    fast_path=mode,
                )
            )
