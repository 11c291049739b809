"""`upload-service dev`: its own Redis, a worker and the server; an upload reaches ready."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_for_port
from media_helpers import make_video
from pipeline_helpers import upload_file, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.one_path]


def test_dev_runs_everything_and_an_upload_gets_ready(tmp_path: Path) -> None:
    port, dead_redis = free_port(), free_port()  # nothing answers there: dev starts one
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPLOAD_", "WEBHOOK_", "B2_"))}
    env.update(
        UPLOAD_DATA_DIR=str(tmp_path / "data"),
        REDIS_URL=f"redis://127.0.0.1:{dead_redis}/0",
        TRANSCRIBE="false",
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "upload_service.cli", "dev", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout=30)
        deadline = time.monotonic() + 15
        while "upload token:" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log_path.read_text()
        assert "started a local Redis" in text
        token = re.search(r"upload token:\s+(\S+)", text)
        api_key = re.search(r"Authorization: Bearer ([^)\s]+)\)", text)
        assert token and api_key, text
        base = f"http://127.0.0.1:{port}"
        clip = make_video(tmp_path / "hello.mp4", seconds=2, size="320x180")
        upload_id = upload_file(base, token.group(1), clip)
        record = wait_for_state(base, api_key.group(1), upload_id, timeout=60)
        assert record["state"] == "ready", (record, log_path.read_text()[-3000:])
        assert (tmp_path / "data/media" / upload_id / "hls/master.m3u8").exists()
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(30)
        finally:
            if dev.poll() is None:
                os.killpg(dev.pid, signal.SIGKILL)
    # Every child went with it: nothing is left in the session.
    left = subprocess.run(["pgrep", "-s", str(dev.pid)], capture_output=True, text=True)
    assert left.stdout.split() == []


def test_dev_keeps_to_a_redis_of_its_own_and_token_signs_as_dev_does(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPLOAD_", "WEBHOOK_", "B2_", "REDIS_"))
    }  # no REDIS_URL: whatever answers on the default port is not dev's to use
    env.update(UPLOAD_DATA_DIR=str(tmp_path / "data"), TRANSCRIBE="false", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "upload_service.cli", "dev", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout=30)
        text = log_path.read_text()
        own = re.search(
            r"Redis: started a local Redis of its own at redis://127.0.0.1:(\d+)/0", text
        )
        assert own and own.group(1) != "6379", text
        assert f"token secret:  {tmp_path / 'data/.dev-secret'}" in text
        # `./run token` right after `./run dev`: the same secret, so the server takes it.
        minted = subprocess.run(
            [sys.executable, "-m", "upload_service.cli", "token", "--sub", "someone"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "signing with the secret of `upload-service dev`" in minted.stderr
        created = httpx.post(
            f"http://127.0.0.1:{port}/files/",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "10",
                "Authorization": f"Bearer {minted.stdout.strip()}",
            },
        )
        assert created.status_code == 201, created.text
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(30)
        finally:
            if dev.poll() is None:
                os.killpg(dev.pid, signal.SIGKILL)
