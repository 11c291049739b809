"""Running ffmpeg with a deadline, reading its `-progress pipe:1` report.

ffmpeg writes `key=value` blocks to stdout (`out_time_us=…`, `progress=continue|end`);
stderr goes to a log file in the job's work dir, so neither pipe can fill up and
stall the encoder. The process is killed on time-out and on any exception in
the caller's thread (Dramatiq's time limit, a shutdown, a progress callback
that learns the upload was deleted), so no encoder outlives its job.

Every run goes through the job's `MediaTools`: the sandbox and the limits.
How a run ended decides whether another attempt could help (`failures`):
out of time, CPU or memory is the file's cost, and so is a refusal of media
that probed fine; a full disk or a kill from outside is this machine's.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .failures import FfmpegFailed, FfmpegTimeout, ProcessingLimit, TranscodeFailed
from .media_policy import MediaLimits
from .media_tools import MediaTools

# Info level, tagged: the log then also says when ffmpeg stopped on a signal
# (its CPU-time limit), and the tail of an error quotes only what went wrong.
BASE_ARGS = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "level+info"]
# How ffmpeg and its libraries say that an allocation failed (MEDIA_MEMORY_LIMIT).
_OUT_OF_MEMORY = ("Cannot allocate memory", "malloc of size", "Out of memory")
_PROBLEM_TAGS = ("[warning]", "[error]", "[fatal]", "[panic]")
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


# Signs in ffmpeg's log of a failure that is this machine's, not the file's.
_MACHINE_TROUBLE = ("No space left on device", "Input/output error", "Disk quota exceeded")


def run_ffmpeg(
    args: Sequence[str],
    *,
    tools: MediaTools,
    duration: float | None,
    timeout: float,
    log_path: Path,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Run `ffmpeg <args>` contained; raise a failure (see module doc) with stderr's tail."""
    command = tools.command([*BASE_ARGS, *PROGRESS_ARGS, *args], duration)
    with open(log_path, "ab") as log:
        log_start = log.tell()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
        )
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
        raise FfmpegTimeout(f"processing ran longer than its {timeout:.0f} s limit and was stopped")
    if returncode != 0:
        raise _failure(returncode, _read_from(log_path, log_start), tools.limits, duration)
    if on_progress is not None:
        on_progress(100.0)


def _failure(returncode: int, log: str, limits: MediaLimits, duration: float | None) -> Exception:
    # ffmpeg catches SIGXCPU, the CPU-time rlimit's signal, and exits as after any other.
    if f"received signal {signal.SIGXCPU:d}." in log:
        return ProcessingLimit(
            f"processing needed more than its {limits.cpu_seconds(duration)} s of CPU time"
        )
    tail = _problems(log)
    if any(sign in log for sign in _OUT_OF_MEMORY):
        return ProcessingLimit("processing needed more memory than allowed (MEDIA_MEMORY_LIMIT)")
    if returncode < 0 or returncode >= 128 or any(s in tail for s in _MACHINE_TROUBLE):
        return FfmpegFailed(f"ffmpeg exited with status {returncode}: {tail}")
    return TranscodeFailed(f"the media could not be transcoded: {tail or returncode}")


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _problems(log: str, lines: int = 5) -> str:
    """The last warnings and errors of a run's log, without their level tags."""
    found = []
    for line in log.splitlines():
        for tag in _PROBLEM_TAGS:
            if tag in line:
                found.append(line.replace(tag + " ", "").strip())
                break
    return " | ".join(found[-lines:])


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
