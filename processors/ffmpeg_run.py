"""Running ffmpeg with a deadline, reading its `-progress pipe:1` report.

ffmpeg writes `key=value` blocks to stdout (`out_time_us=…`, `progress=continue|end`);
stderr goes to a log file in the job's work dir, so neither pipe can fill up and
stall the encoder. The process is killed on time-out and on any exception in
the caller's thread (Dramatiq's time limit, a shutdown), so no encoder
outlives its job.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .failures import FfmpegFailed, FfmpegTimeout

BASE_ARGS = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error"]
PROGRESS_ARGS = ["-progress", "pipe:1", "-nostats"]


def parse_progress_line(line: str, duration: float | None) -> float | None:
    """Percent done for an `out_time_us=` line, else None."""
    key, _, value = line.strip().partition("=")
    if key != "out_time_us" or not duration:
        return None
    try:
        seconds = int(value) / 1_000_000
    except ValueError:  # "N/A" before the first frame
        return None
    return max(0.0, min(100.0, 100.0 * seconds / duration))


def run_ffmpeg(
    args: Sequence[str],
    *,
    duration: float | None,
    timeout: float,
    log_path: Path,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Run `ffmpeg <args>`; raise FfmpegFailed / FfmpegTimeout with stderr's tail."""
    command = [*BASE_ARGS, *PROGRESS_ARGS, *args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    timed_out = threading.Event()

    def kill_on_deadline() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, kill_on_deadline)
    timer.daemon = True
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            percent = parse_progress_line(line, duration)
            if percent is not None and on_progress is not None:
                on_progress(percent)
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if timed_out.is_set():
        raise FfmpegTimeout(f"ffmpeg ran longer than {timeout:.0f}s and was stopped")
    if returncode != 0:
        raise FfmpegFailed(f"ffmpeg exited with status {returncode}: {_tail(log_path)}")
    if on_progress is not None:
        on_progress(100.0)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


class Throttle:
    """Calls `sink` at most once per `interval` seconds, and always at 100%."""

    def __init__(self, sink: Callable[[float], None], interval: float = 1.0) -> None:
        self.sink = sink
        self.interval = interval
        self._last: float | None = None

    def __call__(self, percent: float) -> None:
        now = time.monotonic()
        if percent >= 100.0 or self._last is None or now - self._last >= self.interval:
            self._last = now
            self.sink(round(percent, 1))
