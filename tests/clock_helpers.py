"""A clock a test moves by hand, for code that takes its clock as a parameter."""

from __future__ import annotations


class Clock:
    """Returns `now` when called; the test sets `now`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
