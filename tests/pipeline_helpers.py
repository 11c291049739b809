"""Helpers for the pipeline tests: a real `upload-service worker`, uploads, polling."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from conftest import API_KEY, TOKEN_SECRET, settings_env
from redis import Redis
from webhook_helpers import SECRET, Receiver

from processors.pipeline import PipelineContext
from processors.publish import make_publisher
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore

TUS = {"Tus-Resumable": "1.0.0"}
# A worker's job comes back to the queue 3 s after its worker died (heartbeats), and
# the look for such jobs runs on every maintenance chance: a kill test waits seconds.
FAST_REQUEUE = {"WORKER_HEARTBEAT_TIMEOUT": "3", "WORKER_MAINTENANCE_CHANCE": "200000"}


def ladder_under_way(settings: Settings, upload_id: str) -> bool:
    """The job has published its smallest rung and begun a larger one (its checkpoint
    manifest says so): the moment a kill test kills the worker."""
    manifest = settings.work_dir / upload_id / "manifest.json"
    if not manifest.exists():
        return False
    runs = json.loads(manifest.read_text())["runs"]
    return "rung1" in runs or "rung0" in runs


def pipeline_settings(
    data_dir: Path,
    redis_url: str,
    *,
    db: int | None = None,
    receiver: Receiver | None = None,
    **changes: Any,
) -> Settings:
    """Settings for a live server with real workers: transcription off (a test that
    wants captions turns it on), webhooks signed to `receiver` when one is given.
    `db` moves to that database of `redis_url`'s server: a test whose workers
    leave messages behind keeps them away from the session's other tests."""
    if db is not None:
        redis_url = f"{redis_url.rsplit('/', 1)[0]}/{db}"
    hooks = {"webhook_url": receiver.url, "webhook_secret": SECRET} if receiver else {}
    return Settings(
        data_dir=data_dir,
        redis_url=redis_url,
        token_secret=TOKEN_SECRET,
        api_key=API_KEY,
        log_json=False,
        transcribe=False,
        **hooks,
        **changes,
    )


def make_ctx(settings: Settings) -> PipelineContext:
    """What a worker gives the pipeline, for running a job in the test's process: the
    real status store and publisher, and a job queue that records what is sent."""
    return PipelineContext(
        settings=settings,
        status=StatusStore(settings.status_dir, Redis.from_url(settings.redis_url)),
        jobs=MemoryJobQueue(),
        publisher=make_publisher(settings),
    )


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = settings_env(settings)
    env.update(TRANSCRIBE="true" if settings.transcribe else "false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    """`upload-service worker` in its own process group, so SIGKILL takes ffmpeg too."""

    settings: Settings
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = "worker"
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.settings.data_dir.parent / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "upload_service.cli", "worker", "--threads", "2"],
                env=worker_env(self.settings, **self.extra_env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.process
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def tus_metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def create_upload(base: str, token: str, length: int, filename: str) -> str:
    """POST /files/ without a body; returns the upload id."""
    headers = {
        **TUS,
        "Authorization": f"Bearer {token}",
        "Upload-Length": str(length),
        "Upload-Metadata": tus_metadata(filename=filename),
    }
    response = httpx.post(f"{base}/files/", headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


def send_bytes(base: str, token: str, upload_id: str, data: bytes, offset: int = 0) -> None:
    headers = {
        **TUS,
        "Authorization": f"Bearer {token}",
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    response = httpx.patch(f"{base}/files/{upload_id}", headers=headers, content=data)
    assert response.status_code == 204, response.text


def upload_file(base: str, token: str, path: Path, filename: str | None = None) -> str:
    data = path.read_bytes()
    upload_id = create_upload(base, token, len(data), filename or path.name)
    send_bytes(base, token, upload_id, data)
    return upload_id


def get_status(base: str, api_key: str, upload_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{base}/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def wait_for_state(
    base: str,
    api_key: str,
    upload_id: str,
    states: tuple[str, ...] = ("ready", "failed"),
    timeout: float = 60.0,
    seen: list[str] | None = None,
) -> dict[str, Any]:
    """Poll the status API until the state is one of `states`; records every state seen."""
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = get_status(base, api_key, upload_id)
        if seen is not None and (not seen or seen[-1] != record["state"]):
            seen.append(record["state"])
        if record["state"] in states:
            return record
        time.sleep(0.05)
    raise AssertionError(f"upload {upload_id} still {record.get('state')} after {timeout}s")


def ffprobe_json(target: str) -> dict[str, Any]:
    import json

    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", target],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    data: dict[str, Any] = json.loads(result.stdout)
    return data


async def tus_upload(client: httpx.AsyncClient, token: str, path: Path) -> str:
    data = await anyio.Path(path).read_bytes()
    response = await client.post(
        "/files/",
        content=data,
        headers={
            "Tus-Resumable": "1.0.0",
            "Authorization": f"Bearer {token}",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": tus_metadata(filename=path.name),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert response.status_code == 201, response.text
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
