"""The service's settings: the only module that reads the environment.

Every setting has an embedded default so that `upload-service dev` runs on a
fresh machine; `serve` insists on a token secret (see `Settings.require_secret`).
A `.env` file in the working directory may supply values; the real environment wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GIB = 1024**3
MEDIA_ACCESS_MODES = ("signed", "public")


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        values[key] = value.strip().strip("'\"")
    return values


def _int(env: dict[str, str], name: str, default: int, minimum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"setting {name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SystemExit(f"setting {name} must be at least {minimum}, got {value}")
    return value


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SystemExit(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"setting {name} must be a number, got {raw!r}") from None


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _floats(env: dict[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"setting {name} must be comma-separated seconds, got {raw!r}") from None


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: those it may run on (a container's cpuset), no
    more than its CPU quota allows (`docker run --cpus 2` on a 64-core host: 2)."""
    count = len(os.sched_getaffinity(0))
    quota = _cpu_quota(cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cpu_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time the cgroup may use, or None without a limit."""
    try:  # cgroup v2: "max 100000", or "200000 100000" for two CPUs
        quota, period = (cgroup / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:  # cgroup v1: -1 without a limit
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return int(quota) / int(period)


def _broker_url(raw: str | None) -> str | None:
    url = (raw or "").strip()
    if not url:
        return None
    if not url.startswith(("amqp://", "amqps://", "redis://", "rediss://", "unix://")):
        raise SystemExit(f"BROKER_URL must be an amqp:// or redis:// URL, got {url!r}")
    return url


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    redis_url: str = "redis://127.0.0.1:6379/0"
    token_secret: str | None = None
    api_key: str | None = None
    max_size: int = 10 * GIB
    expiry: int = 7 * 24 * 3600
    # Seconds between two runs of the periodic `sweep_expired` worker task.
    sweep_interval: int = 3600
    # A status left `uploaded` this long (its job lost) gets `process_upload` re-sent;
    # the workers look for such uploads every pipeline_resend_interval seconds.
    pipeline_resend_after: int = 120
    pipeline_resend_interval: float = 60.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_timeout: float = 15.0
    # Behind a reverse proxy, X-Forwarded-Proto/-Host decide the Location URLs.
    behind_proxy: bool = False
    # The service's public origin (UPLOAD_PUBLIC_URL), put in front of the URLs it hands
    # out (`/files/{id}`); empty: URLs relative to this server.
    public_url: str | None = None
    # Where this server's `/media` is reached from outside; None: `{public_url}/media`.
    media_public_url: str | None = None
    # "signed": media URLs carry an expiring HMAC (`?exp=&sig=`); "public": plain URLs.
    media_access: str = "signed"
    # The HMAC key of media URLs; None: derived from token_secret (see media_signing).
    media_signing_key: str | None = None
    # Seconds a signed media URL stays valid at least (its expiry is rounded up).
    media_url_ttl: int = 6 * 3600
    cors_origins: tuple[str, ...] = ("*",)
    lock_ttl: int = 8
    # A PATCH body that sends nothing for this long is cut off (its bytes are
    # kept): a vanished client must not hold the upload's lock forever.
    body_timeout: float = 60.0
    # A body slower than this many bytes a second, averaged over `body_rate_window`
    # seconds, is cut off too (its bytes kept, its lock released): a trickle of a
    # byte now and then never stalls for `body_timeout`, yet holds the lock forever.
    min_body_rate: int = 1024
    body_rate_window: float = 60.0
    # An upload's offset reaches its status record at most once per this many
    # seconds while bytes arrive, and this long after its last append at the
    # latest (core.progress_pace); 0: after every append.
    progress_interval: float = 1.0
    # Request headers: most bytes and most fields (431 past either), and the
    # seconds a connection may take to send them (slowloris) before it is closed.
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 15.0
    # Per user (the token's `sub`): most unfinished uploads, and most creations per
    # `creation_window` seconds (429 past either); 0 switches a limit off.
    max_unfinished: int = 200
    creation_rate: int = 300
    creation_window: float = 60.0
    # Seconds the records of a terminated or expired upload are kept (its status, its
    # store record, its delivery log) before the sweep removes them; 0 keeps them.
    retention: int = 30 * 24 * 3600
    # /readyz reports the data dir's file system as not ready below this many free bytes.
    min_free_bytes: int = 256 * 1024 * 1024
    log_level: str = "INFO"
    log_json: bool = True
    # The speed-ups of upload_service.fastpath (on), or their stock counterparts (off).
    fast_path: bool = True
    # `serve` processes (uvicorn workers); 0 means one per CPU this process may use.
    server_workers: int = 0
    # Processing
    whisper_model: str | None = None
    transcribe_language: str | None = None
    transcribe: bool = True
    # CPU threads of the speech engine; 0: half the usable CPUs, since transcription
    # runs beside the encoder and each should keep a share of the cores.
    transcribe_threads: int = 0
    keep_local: bool = False
    # Pipeline reliability: ffmpeg gets max(min, factor x media duration) seconds;
    # transient failures are retried with exponential backoff from min_backoff.
    transcode_timeout_factor: float = 3.0
    transcode_timeout_min: float = 600.0
    # Transcription gets max(min, factor x media duration) seconds; past that, no captions.
    transcribe_timeout_factor: float = 1.0
    transcribe_timeout_min: float = 300.0
    # Hostile media (docs/security.md): how the tools are contained, what a file may cost.
    media_sandbox: str = "bwrap"
    media_max_pixels: int = 4096 * 4096
    media_max_duration: float = 4 * 3600.0
    media_max_streams: int = 16
    media_max_fps: float = 30.0
    media_cpu_per_second: float = 3.0
    media_cpu_min: float = 300.0
    media_memory_limit: int = 4 * GIB
    process_max_retries: int = 5
    process_min_backoff: float = 10.0
    # Redis broker: a worker silent this long is dead and its messages are requeued
    # by a maintenance pass, which every worker process runs each
    # worker_maintenance_interval seconds (processors.redelivery), besides Dramatiq's
    # own random one on this many broker commands per million.
    worker_heartbeat_timeout: float = 30.0
    worker_maintenance_interval: float = 5.0
    worker_maintenance_chance: int = 1000
    # A `processing` status unchanged this long: the sweep re-sends its job (a lost
    # message; the pipeline's lock makes a duplicate of a live job a no-op).
    pipeline_stuck_after: int = 1800
    # The Dramatiq broker: None for Redis at redis_url, or amqp://... for RabbitMQ.
    broker_url: str | None = None
    # RabbitMQ only: a prefix of the queue names, for deployments sharing a vhost.
    broker_namespace: str = ""
    # B2: publishing goes to B2 when key id, key and bucket are all set.
    b2_key_id: str | None = None
    b2_key: str | None = None
    b2_bucket: str | None = None
    b2_prefix: str = ""
    b2_public_url: str | None = None
    b2_realm: str = "production"
    # Large files go up in parts of at least this many bytes (B2 minimum: 5 MB).
    b2_part_size: int = 100 * 1024 * 1024
    b2_upload_threads: int = 4
    # Where tus uploads live: "local" (UPLOAD_DATA_DIR/uploads) or "b2" (the B2
    # bucket, for server and workers without a shared disk; needs the B2 settings).
    upload_store: str = "local"
    # Where status records and the webhook log live (upload_service.core.state):
    # empty for files under UPLOAD_DATA_DIR (one machine), or a postgresql:// URL
    # shared by every server and worker (several machines, no shared disk).
    state_url: str | None = None
    # Connections each process keeps to that PostgreSQL, at most.
    state_pool_size: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def status_dir(self) -> Path:
        return self.data_dir / "status"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def serve_processes(self) -> int:
        """How many processes `serve` runs: the setting, or one per usable CPU."""
        if self.server_workers < 0:
            raise SystemExit(
                f"UPLOAD_SERVER_WORKERS must be 0 (one per CPU) or more, got {self.server_workers}"
            )
        return self.server_workers or usable_cpus()

    @property
    def media_base(self) -> str:
        """The URL published media are reached at: `{media_base}/{id}/{name}`."""
        if self.media_public_url:
            return self.media_public_url.rstrip("/")
        return (self.public_url or "").rstrip("/") + "/media"

    def download_url(self, upload_id: str) -> str:
        """`GET /files/{id}`: the original, for its owner or the backend only."""
        return f"{(self.public_url or '').rstrip('/')}/files/{upload_id}"

    @property
    def b2_enabled(self) -> bool:
        return bool(self.b2_key_id and self.b2_key and self.b2_bucket)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, dotenv: Path | None = None
    ) -> Settings:
        env = _read_dotenv(dotenv or Path(".env"))
        env.update(os.environ if environ is None else environ)
        return cls(
            data_dir=Path(env.get("UPLOAD_DATA_DIR") or "./data"),
            redis_url=env.get("REDIS_URL") or cls.redis_url,
            token_secret=env.get("UPLOAD_TOKEN_SECRET") or None,
            api_key=env.get("UPLOAD_API_KEY") or None,
            max_size=_int(env, "UPLOAD_MAX_SIZE", cls.max_size),
            expiry=_int(env, "UPLOAD_EXPIRY", cls.expiry),
            sweep_interval=_int(env, "UPLOAD_SWEEP_INTERVAL", cls.sweep_interval),
            pipeline_resend_after=_int(env, "PIPELINE_RESEND_AFTER", cls.pipeline_resend_after),
            pipeline_resend_interval=_float(
                env, "PIPELINE_RESEND_INTERVAL", cls.pipeline_resend_interval
            ),
            webhook_url=env.get("WEBHOOK_URL") or None,
            webhook_secret=env.get("WEBHOOK_SECRET") or None,
            webhook_schedule=_floats(env, "WEBHOOK_RETRY_SCHEDULE", cls.webhook_schedule),
            webhook_timeout=float(env.get("WEBHOOK_TIMEOUT") or cls.webhook_timeout),
            behind_proxy=_bool(env, "UPLOAD_BEHIND_PROXY", False),
            public_url=env.get("UPLOAD_PUBLIC_URL") or None,
            media_public_url=env.get("MEDIA_PUBLIC_URL") or None,
            media_access=_choice(env, "MEDIA_ACCESS", MEDIA_ACCESS_MODES, cls.media_access),
            media_signing_key=env.get("MEDIA_SIGNING_KEY") or None,
            media_url_ttl=_int(env, "MEDIA_URL_TTL", cls.media_url_ttl, minimum=60),
            cors_origins=tuple(
                o.strip() for o in (env.get("UPLOAD_CORS_ORIGINS") or "*").split(",") if o.strip()
            ),
            lock_ttl=_int(env, "UPLOAD_LOCK_TTL", cls.lock_ttl),
            body_timeout=float(env.get("UPLOAD_BODY_TIMEOUT") or cls.body_timeout),
            min_body_rate=_int(env, "UPLOAD_MIN_BODY_RATE", cls.min_body_rate, minimum=0),
            body_rate_window=_float(env, "UPLOAD_BODY_RATE_WINDOW", cls.body_rate_window),
            progress_interval=_float(env, "UPLOAD_PROGRESS_INTERVAL", cls.progress_interval),
            max_header_bytes=_int(
                env, "UPLOAD_MAX_HEADER_BYTES", cls.max_header_bytes, minimum=1024
            ),
            max_headers=_int(env, "UPLOAD_MAX_HEADERS", cls.max_headers, minimum=10),
            header_timeout=_float(env, "UPLOAD_HEADER_TIMEOUT", cls.header_timeout),
            max_unfinished=_int(env, "UPLOAD_MAX_UNFINISHED", cls.max_unfinished, minimum=0),
            creation_rate=_int(env, "UPLOAD_CREATION_RATE", cls.creation_rate, minimum=0),
            creation_window=_float(env, "UPLOAD_CREATION_WINDOW", cls.creation_window),
            retention=_int(env, "UPLOAD_RETENTION", cls.retention, minimum=0),
            min_free_bytes=_int(env, "UPLOAD_MIN_FREE_BYTES", cls.min_free_bytes, minimum=0),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            log_json=_bool(env, "LOG_JSON", True),
            fast_path=_bool(env, "UPLOAD_FAST_PATH", cls.fast_path),
            server_workers=_int(env, "UPLOAD_SERVER_WORKERS", cls.server_workers),
            whisper_model=env.get("WHISPER_MODEL") or None,
            transcribe_language=env.get("TRANSCRIBE_LANGUAGE") or None,
            transcribe=_bool(env, "TRANSCRIBE", True),
            transcribe_threads=_int(env, "TRANSCRIBE_THREADS", cls.transcribe_threads, minimum=0),
            keep_local=_bool(env, "KEEP_LOCAL_COPIES", False),
            transcode_timeout_factor=float(
                env.get("TRANSCODE_TIMEOUT_FACTOR") or cls.transcode_timeout_factor
            ),
            transcode_timeout_min=float(
                env.get("TRANSCODE_TIMEOUT_MIN") or cls.transcode_timeout_min
            ),
            transcribe_timeout_factor=_float(
                env, "TRANSCRIBE_TIMEOUT_FACTOR", cls.transcribe_timeout_factor
            ),
            transcribe_timeout_min=_float(
                env, "TRANSCRIBE_TIMEOUT_MIN", cls.transcribe_timeout_min
            ),
            media_sandbox=(env.get("MEDIA_SANDBOX") or cls.media_sandbox).strip().lower(),
            media_max_pixels=_int(env, "MEDIA_MAX_PIXELS", cls.media_max_pixels),
            media_max_duration=_float(env, "MEDIA_MAX_DURATION", cls.media_max_duration),
            media_max_streams=_int(env, "MEDIA_MAX_STREAMS", cls.media_max_streams),
            media_max_fps=_float(env, "MEDIA_MAX_FPS", cls.media_max_fps),
            media_cpu_per_second=_float(env, "MEDIA_CPU_PER_SECOND", cls.media_cpu_per_second),
            media_cpu_min=_float(env, "MEDIA_CPU_MIN", cls.media_cpu_min),
            media_memory_limit=_int(env, "MEDIA_MEMORY_LIMIT", cls.media_memory_limit),
            process_max_retries=_int(env, "PROCESS_MAX_RETRIES", cls.process_max_retries),
            process_min_backoff=float(env.get("PROCESS_MIN_BACKOFF") or cls.process_min_backoff),
            worker_heartbeat_timeout=float(
                env.get("WORKER_HEARTBEAT_TIMEOUT") or cls.worker_heartbeat_timeout
            ),
            worker_maintenance_chance=_int(
                env, "WORKER_MAINTENANCE_CHANCE", cls.worker_maintenance_chance
            ),
            worker_maintenance_interval=_float(
                env, "WORKER_MAINTENANCE_INTERVAL", cls.worker_maintenance_interval
            ),
            pipeline_stuck_after=_int(env, "PIPELINE_STUCK_AFTER", cls.pipeline_stuck_after),
            broker_url=_broker_url(env.get("BROKER_URL")),
            broker_namespace=(env.get("BROKER_NAMESPACE") or "").strip(),
            b2_key_id=env.get("B2_KEY_ID") or None,
            b2_key=env.get("B2_APPLICATION_KEY") or None,
            b2_bucket=env.get("B2_BUCKET") or None,
            b2_prefix=(env.get("B2_PREFIX") or "").strip("/"),
            b2_public_url=env.get("B2_PUBLIC_URL") or None,
            b2_realm=env.get("B2_REALM") or "production",
            b2_part_size=_int(env, "B2_PART_SIZE", cls.b2_part_size),
            b2_upload_threads=_int(env, "B2_UPLOAD_THREADS", cls.b2_upload_threads),
            upload_store=(env.get("UPLOAD_STORE") or "local").strip().lower(),
            state_url=(env.get("STATE_URL") or "").strip() or None,
            state_pool_size=_int(env, "STATE_POOL_SIZE", cls.state_pool_size, minimum=1),
        )
