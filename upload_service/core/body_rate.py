"""A floor under a request body's pace: a trickle is cut off like a stall.

An idle timeout alone lets a client hold an upload's lock for ever by sending a
byte just before each timeout. With a floor, a body that brings fewer than
`min_rate` bytes a second over any window of `window` seconds (measured from
its start, window after window) is cut off too; what it sent is kept, as for a
stall. Both body paths check it: the stock one as chunks arrive, the splice
lanes on each tick.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateFloor:
    min_rate: int  # bytes a second; 0: no floor
    window: float  # seconds

    def start(self, now: float) -> RateCheck | None:
        return RateCheck(self, now) if self.min_rate > 0 and self.window > 0 else None


class RateCheck:
    """One body's progress against the floor: a mark at each window's start."""

    def __init__(self, floor: RateFloor, now: float) -> None:
        self.floor = floor
        self.mark_time = now
        self.mark_bytes = 0

    def too_slow(self, received: int, now: float) -> bool:
        """Whether the body, `received` bytes in by `now`, fell below the floor over
        the window that just ended (False until a window has passed)."""
        elapsed = now - self.mark_time
        if elapsed < self.floor.window:
            return False
        if received - self.mark_bytes < self.floor.min_rate * elapsed:
            return True
        self.mark_time, self.mark_bytes = now, received
        return False
