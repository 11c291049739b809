"""`--limit-rate`: at most `rate` bytes in any one-second window.

The uploader reports progress once per block it reads (64 KiB), just before the
block goes out, so sleeping in that callback holds the upload back. The window
slides: what counts is what went out in the last second, not the average since
the start, so an upload that paused (or waited on a retry) does not make up for
it with a burst at full speed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateLimit:
    def __init__(
        self,
        rate: int,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.budget = rate * window  # bytes one window may hold
        self.window = window
        self.clock, self.sleep = clock, sleep
        # (time, bytes sent so far): the first is the last one at or before the window's
        # start, the baseline that what went out within the window is counted from.
        self.samples: deque[tuple[float, int]] = deque()

    def __call__(self, sent: int) -> None:
        now = self.clock()
        if not self.samples:
            self.samples.append((now, sent))  # where this run starts (0, or a resume)
            return
        self.samples.append((now, sent))
        self._slide(now)
        if sent - self.samples[0][1] <= self.budget:
            return
        # Wait until enough of the window's early samples have left it: the first
        # sample from which what went out since fits the budget sets the time.
        until = next(t for t, s in self.samples if sent - s <= self.budget) + self.window
        self.sleep(until - now)
        now = self.clock()
        self.samples[-1] = (now, sent)  # the block goes out now, not when it was read
        self._slide(now)

    def _slide(self, now: float) -> None:
        start = now - self.window
        while len(self.samples) > 1 and self.samples[1][0] <= start:
            self.samples.popleft()
