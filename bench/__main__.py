"""`python -m bench [--quick] [--only SUITE ...] [--fast-path on|off|both]`: run the
benchmarks, write bench/results/latest.md and latest.json, and after a full run (every
suite, full sizes, both fast path modes, the default --out) docs/performance.md.

Starts its own Redis, this service, the @tus/server peer (bench/node_modules,
`npm ci --prefix bench`) and the bare references, each on a free loopback port in a
temp dir, and removes them all at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import harness, load_suites, machine, procs, report, small_suite, upload_suites

SUITES = {
    "single": upload_suites.single,
    "memory": upload_suites.memory,
    "latency": upload_suites.latency,
    "small": small_suite.small,
    "concurrency": load_suites.concurrency,
    "polling": load_suites.polling,
    "workers": load_suites.workers,
}
FAST_PATH = {"on": ("on",), "off": ("off",), "both": ("on", "off")}
RESULTS = procs.BENCH_DIR / "results"
DOCS = procs.ROOT / "docs" / "performance.md"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    parser.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    parser.add_argument(
        "--fast-path",
        choices=FAST_PATH,
        default="both",
        help="UPLOAD_FAST_PATH of this service; both (the default): side by side, "
        "but for the `workers` suite, which runs on only",
    )
    parser.add_argument("--repeats", type=int, help="repeats of the single-upload runs")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where latest.md goes (anywhere else, docs/performance.md is left alone)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temp dir")
    args = parser.parse_args(argv)
    params = harness.Params.quick() if args.quick else harness.Params()
    if args.repeats:
        params.repeats = args.repeats
    chosen = args.only or list(SUITES)
    # Only a full run into the repository's results rewrites the performance page.
    full = not (args.quick or args.only or args.repeats) and args.fast_path == "both"
    docs = DOCS if full and args.out.resolve() == RESULTS else None
    info = machine.describe()
    started = time.monotonic()

    tmp = Path(tempfile.mkdtemp(prefix="upload-bench-", dir=args.tmp))
    try:
        with procs.running(procs.redis_proc(tmp)) as redis:
            source = tmp / "source.bin"
            harness.make_source(source, params.size)
            fd = os.open(source, os.O_RDONLY)
            bench = harness.Bench(params, tmp, redis, source, fd, FAST_PATH[args.fast_path])
            for name in chosen:
                SUITES[name](bench)
            os.close(fd)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["duration_s"] = round(time.monotonic() - started, 1)
    md = report.write(bench.figures, info, args.out, argv, docs)
    print(md.read_text())
    print(
        f"wrote {md} and {md.with_suffix('.json')}{f' and {docs}' if docs else ''} "
        f"in {info['duration_s']} s"
    )


if __name__ == "__main__":
    main()
