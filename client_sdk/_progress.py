"""A plain-text progress bar: bytes, percent, rate and ETA.

On a terminal it redraws one line with `\\r`; elsewhere (CI logs, pipes) it prints a
line at most every `interval` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    for unit in UNITS:
        if abs(n) < 1024 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds > 99 * 3600:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    WIDTH = 28
    WINDOW = 5.0  # seconds of samples behind the rate: recent speed, not lifetime average

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        interval: float | None = None,
        label: str = "",
    ) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.1 if self.tty else 2.0)
        self.label = label
        self.samples: deque[tuple[float, int]] = deque()
        self.sent = 0
        self.last_draw: float | None = None  # the first update always draws
        self.drawn_width = 0
        self.finished = False

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None

    def line(self) -> str:
        total = max(self.total, 1)
        fraction = min(1.0, self.sent / total) if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        rate = self.rate()
        eta = (self.total - self.sent) / rate if rate else None
        rate_text = f"{human_bytes(rate)}/s" if rate else "--/s"
        prefix = f"{self.label} " if self.label else ""
        return (
            f"{prefix}[{bar}] {fraction * 100:5.1f}%  "
            f"{human_bytes(self.sent)} / {human_bytes(self.total)}  "
            f"{rate_text}  ETA {human_duration(0 if fraction >= 1 else eta)}"
        )

    def update(self, sent: int, total: int | None = None) -> None:
        now = time.monotonic()
        if total is not None:
            self.total = total
        self.sent = sent
        self.samples.append((now, sent))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.WINDOW:
            self.samples.popleft()
        done = self.total > 0 and sent >= self.total
        if done or self.last_draw is None or now - self.last_draw >= self.interval:
            self.draw()
            self.last_draw = now
        if done:
            self.finish()

    def draw(self) -> None:
        text = self.line()
        if self.tty:
            pad = " " * max(0, self.drawn_width - len(text))
            self.stream.write("\r" + text + pad)
            self.drawn_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line (keeps later messages off the redrawn line)."""
        if self.finished:
            return
        self.finished = True
        if self.tty and self.drawn_width:
            self.stream.write("\n")
            self.stream.flush()

    def __call__(self, sent: int, total: int) -> None:
        self.update(sent, total)
