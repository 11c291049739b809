"""An upload's progress figure while its bytes arrive: percent, and the time left.

The time left comes from the upload's own measured speed: the bytes this server
process has seen arrive for it since it first saw it, over the time since. A
process that has seen one report only (a first chunk, or a client that moved to
another server process) has no speed yet: `eta_s` is None. The memory is a small
LRU, so abandoned uploads cost nothing for long.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

REMEMBERED = 4096


class UploadSpeeds:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._first: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def progress(self, upload_id: str, offset: int, length: int | None) -> dict[str, Any]:
        now = self.clock()
        first = self._first.get(upload_id)
        if first is None or offset < first[1]:
            first = self._first[upload_id] = (now, offset)
        self._first.move_to_end(upload_id)
        while len(self._first) > REMEMBERED:
            self._first.popitem(last=False)
        percent = round(100.0 * offset / length, 1) if length else None
        eta = None
        seconds, moved = now - first[0], offset - first[1]
        if length and moved > 0 and seconds > 0:
            eta = round((length - offset) * seconds / moved)
        return {"stage": "upload", "percent": percent, "eta_s": eta}

    def forget(self, upload_id: str) -> None:
        self._first.pop(upload_id, None)
