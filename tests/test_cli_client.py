"""`media-upload`: progress output, Ctrl-C and resumption, the server's reasons and what
to do next, JSON on stdout, --wait, the rate limit, exit codes."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
from conftest import TOKEN_SECRET, LiveServer, mint_token

from client_sdk import Uploader, mint_upload_token
from client_sdk._progress import ProgressBar, human_bytes, human_duration
from client_sdk._rate import RateLimit
from client_sdk.cli import EXIT_TOKEN, parse_size
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
        # Slow enough that Ctrl-C lands mid-upload however late the poll sees 256 KiB.
        [*command, "--limit-rate", "512k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a test run in the background (`cmd &`, as CI may be)
        # starts its children with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=60)


def test_a_refused_token_is_explained_in_the_servers_words(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path = random_file(tmp_path / "x.bin", 1000)
    expired = mint_token(TOKEN_SECRET, "cli-user", ttl=-60)
    run = run_cli(
        str(path), "--server", live_server.url, "--token", expired, "--state-dir", str(tmp_path)
    )
    assert run.returncode == EXIT_TOKEN
    assert run.stdout == ""
    # What the server said (its message and code), and what to do about it.
    assert "Unauthorized: creating the upload failed: upload token expired" in run.stderr
    assert "(HTTP 401 unauthorized)" in run.stderr
    assert "get a new upload token, then run the same command again" in run.stderr
    assert "Traceback" not in run.stderr

    bad = mint_upload_token("wrong-secret-0123456789abcdef0123456789ab", "u")
    run = run_cli(
        str(path), "--server", live_server.url, "--token", bad, "--state-dir", str(tmp_path)
    )
    assert run.returncode == EXIT_TOKEN and "invalid upload token" in run.stderr


def test_resuming_with_an_expired_token_says_it_expired_and_that_a_new_one_resumes(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path = random_file(tmp_path / "y.bin", 300_000)
    with Uploader(live_server.url, token(), chunk_size=100_000, store=tmp_path) as up:
        up.upload(path, stop_at=100_000)
    expired = mint_token(TOKEN_SECRET, "cli-user", ttl=-60)
    # Resuming starts with a HEAD, whose 401 has no body: the CLI reads the token itself.
    run = run_cli(
        str(path), "--server", live_server.url, "--token", expired, "--state-dir", str(tmp_path)
    )
    assert run.returncode == EXIT_TOKEN
    assert "the upload token expired at" in run.stderr
    again = run_cli(
        str(path),
        "--server",
        live_server.url,
        "--token",
        token(),
        "--state-dir",
        str(tmp_path),
        "--json",
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] is True


def test_json_puts_one_object_on_stdout_and_the_rest_on_stderr(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path = random_file(tmp_path / "z.bin", 5000)
    run = run_cli(
        str(path),
        "--server",
        live_server.url,
        "--token",
        token(),
        "--state-dir",
        str(tmp_path),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)  # nothing else on stdout
    assert result["size"] == 5000 and result["resumed"] is False
    assert result["url"].endswith("/files/" + result["id"])
    assert "uploaded" in run.stderr


def test_help_documents_the_exit_codes() -> None:
    run = subprocess.run(cli("--help"), capture_output=True, text=True, check=True)
    assert "exit status:" in run.stdout
    for code in ("0", "1", "2", "3", "4", "5", "130"):
        assert f"\n  {code} " in run.stdout


def simulate(limit: RateLimit, clock: list[float], sizes: list[int]) -> list[tuple[float, int]]:
    """Blocks reported instantly (a fast network): time passes only in the limit's sleeps."""
    sent, log = 0, []
    for size in sizes:
        sent += size
        limit(sent)
        log.append((clock[0], sent))
    return log


def most_in_any_second(log: list[tuple[float, int]]) -> int:
    """The most bytes reported within any window (t - 1 s, t]."""
    return max(s - max((s0 for t0, s0 in log if t0 <= t - 1.0), default=0) for t, s in log)


def fake_clock() -> tuple[list[float], Callable[[], float], Callable[[float], None]]:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return clock, lambda: clock[0], sleep


def test_limit_rate_holds_over_any_second_even_after_a_pause() -> None:
    clock, now, sleep = fake_clock()
    limit = RateLimit(1_000_000, clock=now, sleep=sleep)
    limit(0)
    log = simulate(limit, clock, [64 * 1024] * 40)  # about 2.6 MB
    clock[0] += 30.0  # a long pause (a retry, a stalled server): no credit for it
    log += simulate(limit, clock, [64 * 1024] * 40)
    assert most_in_any_second(log) <= 1_000_000
    sent_after_pause = [s - log[39][1] for t, s in log[40:] if t <= log[39][0] + 31.0]
    assert max(sent_after_pause) <= 1_000_000  # not 30 s worth at full speed


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
    printed = json.loads(run.stdout)  # only the JSON: `| jq` reads it
    assert printed["state"] == "ready" and printed["url"].endswith(printed["id"])
    assert urlsplit(printed["outputs"]["hls"]).path.endswith(".m3u8")
    assert httpx.get(printed["outputs"]["hls"]).status_code == 200
