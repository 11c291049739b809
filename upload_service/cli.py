"""`upload-service`: serve, worker, dev, token, sweep, migrate."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from client_sdk import mint_upload_token
from upload_service.core.settings import Settings, _read_dotenv
from upload_service.core.state import check_state_settings, make_state
from upload_service.core.store.factory import check_store_settings


def _parse_meta(pairs: list[str]) -> dict[str, object]:
    meta: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--meta takes key=value, got {pair!r}")
        meta[key] = int(value) if value.lstrip("-").isdigit() else value
    return meta


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from upload_service.core import logs, metrics
    from upload_service.http.body_path import body_path

    if not settings.token_secret:
        raise SystemExit(
            "UPLOAD_TOKEN_SECRET is not set: the server refuses to start without it "
            "(`upload-service dev` makes one for you)"
        )
    check_store_settings(settings)  # UPLOAD_STORE: a clear message, before uvicorn starts
    check_state_settings(settings)  # STATE_URL: reachable, and its schema current
    logs.configure(settings.log_level, settings.log_json)
    logs.flush_on_sigterm()
    workers = args.workers or settings.serve_processes
    # One process per core by default: a process's requests share one GIL, and under
    # a hundred uploads at once that GIL, not the cores, set the pace (bench/).
    with metrics.shared_by_processes() if workers > 1 else contextlib.nullcontext():
        uvicorn.run(
            "upload_service.http.asgi:app",
            host=args.host,
            port=args.port,
            workers=workers,
            log_config=None,
            access_log=False,
            proxy_headers=settings.behind_proxy,
            forwarded_allow_ips="*" if settings.behind_proxy else None,
            timeout_graceful_shutdown=args.graceful_timeout,
            # uvicorn kills a worker that misses a health check; its 5 s default is less
            # than an import takes on a busy small machine, and the kill repeats forever.
            timeout_worker_healthcheck=30,
            # Only where httptools is missing (h11): a head's bound, as head_limits sets.
            h11_max_incomplete_event_size=settings.max_header_bytes,
            http=body_path(settings).http_protocol,  # UPLOAD_FAST_PATH
        )


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from processors.sandbox import Sandbox, SandboxUnavailable

    check_store_settings(settings)  # before the worker processes start
    check_state_settings(settings)
    try:  # a worker that cannot contain ffmpeg must not run it (docs/security.md)
        Sandbox.from_settings(settings).check()
    except SandboxUnavailable as exc:
        raise SystemExit(f"cannot start the workers: {exc}") from None
    argv = [
        "processors.actors",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
    ]
    raise SystemExit(dramatiq_main(make_argument_parser().parse_args(argv)))


def _dev_secret_file(settings: Settings) -> Path:
    return settings.data_dir / ".dev-secret"


def cmd_token(args: argparse.Namespace, settings: Settings) -> None:
    secret = settings.token_secret
    dev_secret = _dev_secret_file(settings)
    if not secret and dev_secret.is_file():
        # What `dev` signs with when no secret is configured: its tokens must work there.
        print(f"signing with the secret of `upload-service dev` ({dev_secret})", file=sys.stderr)
        secret = dev_secret.read_text().strip()
    if not secret:
        raise SystemExit(
            f"UPLOAD_TOKEN_SECRET is not set, and there is no {dev_secret} "
            "(which `upload-service dev` writes)"
        )
    print(
        mint_upload_token(
            secret,
            args.sub,
            ttl=args.ttl,
            max_bytes=args.max_bytes,
            kinds=args.kind or None,
            meta=_parse_meta(args.meta),
        )
    )


def cmd_sweep(args: argparse.Namespace, settings: Settings) -> None:
    from processors.broker import redis_client
    from processors.sweeper import (
        resend_stuck_uploads,
        retire_ended_uploads,
        sweep_expired_uploads,
    )
    from upload_service.core.jobs import DramatiqJobQueue

    removed = sweep_expired_uploads(settings)
    jobs = DramatiqJobQueue.for_settings(settings, redis_client(settings))
    resent = resend_stuck_uploads(settings, jobs)
    retired = retire_ended_uploads(settings)
    print(
        f"swept {len(removed)} expired upload(s); re-sent {len(resent)} lost processing job(s); "
        f"removed the records of {len(retired)} upload(s) ended past UPLOAD_RETENTION"
    )


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    if not settings.state_url:
        print("STATE_URL is not set: the state is files under UPLOAD_DATA_DIR, nothing to migrate")
        return
    state = make_state(settings)
    try:
        applied = state.migrate()
    finally:
        state.close()
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("the schema is current: nothing to apply")


def _redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_own_redis(children: list[subprocess.Popen[bytes]]) -> tuple[str, str]:
    """A private redis-server on a free port, nothing kept on disk: (its URL, its dir)."""
    redis_server = shutil.which("redis-server")
    if not redis_server:
        raise SystemExit(
            "dev runs a Redis of its own and redis-server is not installed "
            "(or set REDIS_URL to a Redis that dev may share)"
        )
    port = _free_port()
    redis_dir = tempfile.mkdtemp(prefix="upload-dev-redis-")
    children.append(
        subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", redis_dir],
            stdout=subprocess.DEVNULL,
        )
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if _redis_answers(url):
            break
        time.sleep(0.1)
    return url, redis_dir


def _secret_source(settings: Settings, secret_file: Path) -> str:
    if settings.token_secret:
        return "UPLOAD_TOKEN_SECRET"
    return f"{secret_file} (`upload-service token` uses it too)"


def cmd_dev(args: argparse.Namespace, settings: Settings) -> None:
    """Everything on one machine: a Redis of its own (unless REDIS_URL names one that
    answers), a worker, the server, and a token secret in the data dir."""
    env = dict(os.environ)
    children: list[subprocess.Popen[bytes]] = []
    scratch: list[str] = []  # removed on exit
    # Only a Redis named on purpose is shared: one that merely answers on the default
    # port may hold another program's queues and keys, which dev must not touch.
    chosen = os.environ.get("REDIS_URL") or _read_dotenv(Path(".env")).get("REDIS_URL")
    if chosen and _redis_answers(chosen):
        print(f"Redis: {chosen} (REDIS_URL), shared with whatever else uses that database")
    else:
        if chosen:
            print(f"nothing answers at REDIS_URL={chosen}")
        env["REDIS_URL"], redis_dir = _start_own_redis(children)
        scratch.append(redis_dir)
        print(
            f"Redis: started a local Redis of its own at {env['REDIS_URL']} "
            "(nothing else uses it; it stops with dev)"
        )
    secret_file = _dev_secret_file(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.token_secret:
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32))
        env["UPLOAD_TOKEN_SECRET"] = secret_file.read_text().strip()
    env.setdefault("UPLOAD_API_KEY", settings.api_key or "dev-api-key")
    env.setdefault("LOG_JSON", "false")
    env["UPLOAD_DATA_DIR"] = str(settings.data_dir.resolve())
    exe = [sys.executable, "-m", "upload_service.cli"]
    children.append(
        subprocess.Popen([*exe, "worker", "--processes", "1", "--threads", "2"], env=env)
    )
    children.append(
        subprocess.Popen([*exe, "serve", "--host", args.host, "--port", str(args.port)], env=env)
    )
    token = mint_upload_token(env["UPLOAD_TOKEN_SECRET"], "dev-user", ttl=7 * 24 * 3600)
    base = f"http://{args.host}:{args.port}"
    print(
        f"\nupload page:   {base}/upload#token={token}\n"
        f"tus endpoint:  {base}/files/\n"
        f"status API:    {base}/v1/uploads/<id>  (Authorization: Bearer {env['UPLOAD_API_KEY']})\n"
        f"upload token:  {token}\n"
        f"token secret:  {_secret_source(settings, secret_file)}\n"
        f"data dir:      {env['UPLOAD_DATA_DIR']}\n",
        flush=True,
    )

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        for directory in scratch:
            shutil.rmtree(directory, ignore_errors=True)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the HTTP server (tus, status API, health, metrics)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes (default: UPLOAD_SERVER_WORKERS, else one per CPU)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=10,
        help="seconds for in-flight requests on shutdown",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="Dramatiq workers running the processing pipeline")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=2)
    worker.set_defaults(func=cmd_worker)

    dev = sub.add_parser(
        "dev", help="its own Redis (unless REDIS_URL names one), a worker and the server"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(func=cmd_dev)

    token = sub.add_parser("token", help="mint an upload token with the configured secret")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    token.add_argument("--max-bytes", type=int, default=None)
    token.add_argument(
        "--kind", action="append", choices=["video", "audio"], help="allowed media kinds"
    )
    token.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    token.set_defaults(func=cmd_token)

    sweep = sub.add_parser("sweep", help="remove expired unfinished uploads now")
    sweep.set_defaults(func=cmd_sweep)

    migrate = sub.add_parser(
        "migrate", help="bring the STATE_URL database's schema up to date (run before serving)"
    )
    migrate.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args, Settings.from_env())


if __name__ == "__main__":
    main()
