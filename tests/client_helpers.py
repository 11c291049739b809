"""Helpers shared by the client SDK, CLI and upload page tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from conftest import settings_env

from upload_service.core.settings import Settings


def random_file(path: Path, size: int) -> Path:
    """Incompressible, unique bytes: every file gets its own fingerprint."""
    path.write_bytes(os.urandom(size))
    return path


def download(server_url: str, upload_id: str, token: str) -> bytes:
    resp = httpx.get(
        f"{server_url}/files/{upload_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    resp.raise_for_status()
    return resp.content


def server_offset(url: str, token: str) -> int:
    resp = httpx.head(
        url, headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}, timeout=10
    )
    resp.raise_for_status()
    return int(resp.headers["upload-offset"])


def stored_urls(store: Path) -> list[str]:
    try:
        data = json.loads(store.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [entry["url"] for entry in data.values()]


def wait_for_offset(
    store: Path, token: str, minimum: int, proc: subprocess.Popen[Any], timeout: float = 30.0
) -> str:
    """Wait until the child has stored an upload URL whose server offset >= minimum."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the uploading child ended before it was interrupted"
        urls = stored_urls(store)
        if urls and server_offset(urls[0], token) >= minimum:
            return urls[0]
        time.sleep(0.05)
    raise AssertionError(f"no stored upload reached offset {minimum} in {timeout}s")


def make_video(path: Path, seconds: int = 4) -> Path:
    """A small real video (lavfi test pattern + tone), made in well under a second."""
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=duration={seconds}:size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "veryfast",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
    )
    return path


@contextmanager
def running_worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """The real pipeline (`upload-service worker`) on the test Redis, without
    speech-to-text (a test pattern with a sine tone has nothing to transcribe)."""
    env = settings_env(settings) | {"TRANSCRIBE": "false"}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir.parent / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "upload_service.cli",
                "worker",
                "--processes",
                "1",
                "--threads",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
