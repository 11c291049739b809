"""`media-upload`: progress output, Ctrl-C and resumption, --wait."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from client_helpers import (
    download,
    make_video,
    random_file,
    running_worker,
    server_offset,
    wait_for_offset,
)
from conftest import TOKEN_SECRET, LiveServer

from client_sdk import mint_upload_token
from client_sdk._progress import ProgressBar, human_bytes, human_duration
from client_sdk.cli import parse_size
from upload_service.core.settings import Settings

pytestmark = pytest.mark.e2e


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "client_sdk.cli", *args]


def token(sub: str = "cli-user") -> str:
    return mint_upload_token(TOKEN_SECRET, sub, ttl=600)


def test_sizes_and_durations() -> None:
    assert parse_size("8M") == 8 * 1024**2
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1MiB") == 1024**2
    assert parse_size("1000") == 1000
    assert human_bytes(1536) == "1.5 KiB"
    assert human_duration(75) == "01:15"
    assert human_duration(3725) == "1:02:05"
    assert human_duration(None) == "--:--"


def test_progress_bar_redraws_one_line_on_a_tty() -> None:
    out = io.StringIO()
    bar = ProgressBar(1000, out, tty=True, interval=0)
    for sent in (0, 250, 500, 1000):
        bar(sent, 1000)
        time.sleep(0.01)
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    last = text.rsplit("\r", 1)[-1]
    assert "100.0%" in last and "1000 B / 1000 B" in last and "/s" in last
    assert "ETA 00:00" in last


def test_progress_bar_prints_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    bar = ProgressBar(4096, out, tty=False, interval=3600)
    bar(0, 4096)
    bar(1024, 4096)  # within the interval: not printed
    bar(4096, 4096)  # the end is always printed
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert "0.0%" in lines[0] and "100.0%" in lines[1]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(
    live_server: LiveServer, tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024
    path = random_file(tmp_path / "lecture.mp4", size)
    state = tmp_path / "state"
    command = cli(
        str(path),
        "--server",
        live_server.url,
        "--token",
        token(),
        "--chunk-size",
        "128k",
        "--state-dir",
        str(state),
    )
    first = subprocess.Popen(
        [*command, "--limit-rate", "2M"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = wait_for_offset(state / "uploads.json", token(), 256 * 1024, first)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    stopped_at = server_offset(url, token())
    assert 0 < stopped_at < size

    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "resuming at" in second.stderr
    assert "100.0%" in second.stderr and "ETA" in second.stderr and "/s" in second.stderr
    assert second.stdout.strip() == url  # the same upload, continued
    upload_id = url.rsplit("/", 1)[-1]
    assert download(live_server.url, upload_id, token()) == path.read_bytes()


def test_errors_exit_nonzero_with_a_message(live_server: LiveServer, tmp_path: Path) -> None:
    path = random_file(tmp_path / "x.bin", 1000)
    bad = mint_upload_token("wrong-secret-0123456789abcdef0123456789ab", "u")
    run = subprocess.run(
        cli(str(path), "--server", live_server.url, "--token", bad, "--state-dir", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "Unauthorized" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_wait_follows_processing_and_prints_outputs(
    live_server: LiveServer, settings: Settings, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "talk.mp4", seconds=3)
    command = cli(
        str(video),
        "--server",
        live_server.url,
        "--token",
        token(),
        "--state-dir",
        str(tmp_path),
        "--wait",
        "--poll-interval",
        "0.2",
        "--wait-timeout",
        "120",
    )
    with running_worker(settings):
        run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert "state: ready" in run.stderr
    printed = json.loads(run.stdout[run.stdout.index("{") :])
    assert printed["state"] == "ready"
    assert urlsplit(printed["outputs"]["hls"]).path.endswith(".m3u8")
    assert httpx.get(printed["outputs"]["hls"]).status_code == 200
