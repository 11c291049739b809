"""Per upload, whether something is due again: at most once per interval.

The status API compares a cached `uploading` with the state this way, and the
server records an upload's offset at this pace (core.progress_pace).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class OncePerInterval:
    # Past this many keys, start afresh: a memory bound, nothing more (a key
    # forgotten is simply due at once).
    TRACKED = 10_000

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}

    def due(self, key: str, anyway: bool = False) -> bool:
        """Whether `key` is due (nothing done for it within the interval, or `anyway`);
        if so, it counts as done now."""
        now = self.clock()
        last = self._last.get(key)
        if not anyway and last is not None and now - last < self.interval:
            return False
        self.done(key, now)
        return True

    def done(self, key: str, at: float | None = None) -> None:
        if len(self._last) >= self.TRACKED:
            self._last.clear()
        self._last[key] = self.clock() if at is None else at

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
