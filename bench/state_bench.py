"""Status polling with the state in PostgreSQL behind the Redis cache, against file state.

    python -m bench.state_bench [--pollers 200] [--seconds 8] [--rounds 3]

The same `serve` (fast path on, default processes), the same Redis, the same
poll (`GET /v1/uploads/{id}` on keep-alive connections, as `bench.load_suites`
polls): once with the state in files (no STATE_URL), once with STATE_URL naming a
fresh PostgreSQL database, alternating for `rounds`. A second table measures
cache misses: polls of the listing, which always reads the state. Prints a
markdown table (bench/results/state.md keeps one).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from bench import client, load, procs

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database() -> str:
    name = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def measure(
    data_dir: Path, redis_port: int, state_url: str | None, pollers: int, seconds: float
) -> tuple[load.PollResult, load.PollResult]:
    proc = procs.service_proc(data_dir, redis_port)
    if state_url:
        proc.env["STATE_URL"] = state_url
    headers = {"Authorization": f"Bearer {procs.API_KEY}"}
    with procs.running(proc):
        token = client.make_token()
        with client.Connection(proc.port) as conn:
            path = client.create(conn, "/files/", token, 1048576)
        one = load.poll(
            proc.port, f"/v1/uploads/{path.rsplit('/', 1)[1]}", headers, pollers, seconds
        )
        listing = load.poll(proc.port, "/v1/uploads?limit=20", headers, pollers // 4, seconds)
    return one, listing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = fresh_database()
    subprocess.run(
        [sys.executable, "-m", "upload_service.cli", "migrate"],
        env={"STATE_URL": url, "PATH": "/usr/bin:/bin", "UPLOAD_DATA_DIR": tempfile.gettempdir()},
        check=True,
        capture_output=True,
    )
    results: dict[str, list[tuple[load.PollResult, load.PollResult]]] = {
        "files": [],
        "postgres": [],
    }
    try:
        with (
            tempfile.TemporaryDirectory() as scratch,
            procs.running(procs.redis_proc(Path(scratch))) as redis,
        ):
            for n in range(args.rounds):
                for kind in ("files", "postgres"):
                    data = Path(scratch) / f"{kind}-{n}"
                    state = url if kind == "postgres" else None
                    results[kind].append(
                        measure(data, redis.port, state, args.pollers, args.seconds)
                    )
                    print(
                        f"round {n + 1} {kind}: {results[kind][-1][0].rps:.0f} req/s",
                        file=sys.stderr,
                    )
    finally:
        drop_database(url)
    print(table(results, args))


def table(
    results: dict[str, list[tuple[load.PollResult, load.PollResult]]], args: argparse.Namespace
) -> str:
    def med(kind: str, which: int) -> tuple[float, float, int]:
        runs = [r[which] for r in results[kind]]
        rps = statistics.median(r.rps for r in runs)
        p99 = statistics.median(load.percentile(r.latencies_ms, 99) for r in runs)
        return rps, p99, sum(r.errors for r in runs)

    lines = [
        "| poll | state | req/s (median) | p99 ms (median) | errors | vs files |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for which, what in (
        (0, f"GET /v1/uploads/{{id}}, {args.pollers} pollers"),
        (1, f"GET /v1/uploads?limit=20 (listing), {args.pollers // 4} pollers"),
    ):
        base = med("files", which)[0]
        for kind in ("files", "postgres"):
            rps, p99, errors = med(kind, which)
            lines.append(
                f"| {what} | {kind} | {rps:.0f} | {p99:.1f} | {errors} | {rps / base:.2f}x |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
