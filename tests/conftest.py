"""Shared fixtures: a private real Redis, settings on a temp dir, tokens, servers.

Each test session starts its own `redis-server` on a free port (real Redis,
nothing shared with other runs); `live_server` starts the real
`upload-service serve` process on uvicorn.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
import redis
from protocol_helpers import app_client
from webhook_helpers import Receiver

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings


def load_anyio_now() -> None:
    """anyio loads its modules on first use, and pytest rewrites them (anyio is a
    pytest plugin). CPython 3.11's AST builder can fail when that first use comes deep
    in a test's stack or in a worker thread ("AST constructor recursion depth
    mismatch"), failing a test that did nothing wrong: load them all here, once."""
    for name in dir(anyio):
        if not name.startswith("_"):
            getattr(anyio, name)
    for module in ("anyio._backends._asyncio", "anyio.from_thread", "anyio.to_process"):
        importlib.import_module(module)


load_anyio_now()

TOKEN_SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def mint_token(
    secret: str,
    sub: str,
    ttl: int = 3600,
    max_bytes: int | None = None,
    kinds: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> str:
    """Like client_sdk.mint_upload_token, but without its checks: tests also need
    expired tokens and out-of-range claims, to see the server refuse them."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "exp": now + ttl, "iat": now}
    if max_bytes is not None:
        claims["max_bytes"] = max_bytes
    if kinds:
        claims["kinds"] = kinds
    if meta:
        claims["meta"] = meta
    return jwt.encode(claims, secret, algorithm="HS256")


API_KEY = "test-api-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Generous: it only bounds a server that never starts, and a loaded two-core machine
# can take many seconds to import and fork one.
def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def wait_for_port_closed(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still accepts connections after {timeout}s")


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required (installed by .ci/run)"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        """Loses every key: Redis here keeps nothing on disk."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# The suites run with the fast path on (the default) and off: UPLOAD_FAST_PATH=off.
FAST_PATH = Settings.from_env(dict(os.environ)).fast_path


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return Settings(
        fast_path=FAST_PATH,
        data_dir=tmp_path / "data",
        redis_url=redis_server.url,
        token_secret=TOKEN_SECRET,
        api_key=API_KEY,
        max_size=200 * 1024 * 1024,
        log_json=False,
        # Per-user quotas are off here: every test of a session shares one Redis and
        # mostly one `sub`. tests/test_bounds_quotas.py turns them on.
        max_unfinished=0,
        creation_rate=0,
    )


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A migrated database of this session's own (postgres_helpers); its URL."""
    from postgres_helpers import create_database, drop_database

    from upload_service.core.state.postgres import PostgresState

    url = create_database()
    state = PostgresState(url)
    try:
        state.migrate()
    finally:
        state.close()
    yield url
    drop_database(url)


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's database, its tables emptied for this test."""
    from postgres_helpers import empty_tables

    empty_tables(postgres_database)
    return postgres_database


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The backend's webhook endpoint: a real HTTP server recording what it is sent."""
    with Receiver() as endpoint:
        yield endpoint


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Worker processes a test starts (pipeline_helpers.WorkerProcess), stopped at its end."""
    started: list[Any] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def make_token() -> Callable[..., str]:
    def make(sub: str = "user-1", secret: str = TOKEN_SECRET, **claims: Any) -> str:
        return mint_token(secret, sub, **claims)

    return make


@pytest.fixture
def jobs() -> MemoryJobQueue:
    return MemoryJobQueue()


@pytest.fixture
async def client(settings: Settings, jobs: MemoryJobQueue) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app with real stores and Redis, and a recording job queue."""
    async with app_client(settings, jobs) as c:
        yield c


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPLOAD_", "WEBHOOK_", "B2_", "MEDIA_", "STATE_"))
    }
    env.update(
        UPLOAD_DATA_DIR=str(settings.data_dir),
        REDIS_URL=settings.redis_url,
        UPLOAD_TOKEN_SECRET=settings.token_secret or "",
        UPLOAD_API_KEY=settings.api_key or "",
        UPLOAD_MAX_SIZE=str(settings.max_size),
        UPLOAD_EXPIRY=str(settings.expiry),
        LOG_JSON="false",
        MEDIA_ACCESS=settings.media_access,
        MEDIA_URL_TTL=str(settings.media_url_ttl),
        UPLOAD_FAST_PATH="on" if settings.fast_path else "off",
        UPLOAD_MAX_UNFINISHED=str(settings.max_unfinished),
        UPLOAD_CREATION_RATE=str(settings.creation_rate),
        UPLOAD_CREATION_WINDOW=str(settings.creation_window),
        UPLOAD_RETENTION=str(settings.retention),
        UPLOAD_MIN_FREE_BYTES=str(settings.min_free_bytes),
    )
    for name, value in (
        ("UPLOAD_PUBLIC_URL", settings.public_url),
        ("MEDIA_PUBLIC_URL", settings.media_public_url),
        ("MEDIA_SIGNING_KEY", settings.media_signing_key),
    ):
        if value:
            env[name] = value
    if settings.state_url:
        env["STATE_URL"] = settings.state_url
    if settings.webhook_url:
        env["WEBHOOK_URL"] = settings.webhook_url
    if settings.webhook_secret:
        env["WEBHOOK_SECRET"] = settings.webhook_secret
    return env


@dataclass
class LiveServer:
    """`upload-service serve` in a child process: real uvicorn, killable for real."""

    settings: Settings
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "upload_service.cli", "serve", "--port", str(self.port)]

    def start(self) -> LiveServer:
        env = settings_env(self.settings) | self.extra_env
        self.log_path = self.settings.data_dir.parent / f"server-{self.port}.log"
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its worker processes die with it in kill()
            )
        try:
            wait_for_port(self.port)
        except RuntimeError:
            # No fixture will stop a server whose start failed: left running, its
            # supervisor would restart workers for ever and load the machine.
            self.kill_quietly()
            raise RuntimeError(f"server did not start; its log:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        assert self.log_path is not None
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill_quietly(self) -> None:
        assert self.process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL the whole server: the supervisor and every worker process."""
        assert self.process
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        # Its worker processes hold the listening socket until they are gone too
        # (a worker in the middle of a disk write dies last): a server started on
        # the same port before then would look ready, then refuse connections.
        wait_for_port_closed(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def server_factory(settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def make(**extra_env: str) -> LiveServer:
        server = LiveServer(settings, extra_env=extra_env).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
