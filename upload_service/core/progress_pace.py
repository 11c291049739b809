"""How often an upload's offset reaches its status record while its bytes arrive.

Every append ends with a new offset. Recording each one costs a state write (a
file replaced, or a PostgreSQL UPDATE) and a cache refresh: a client sending
small chunks as fast as it can would make a hundred of them a second, for
pollers that look once a second or so. So, as tusd paces its progress hooks,
an upload's progress is recorded at once when nothing was recorded for it in
the last `interval` seconds; otherwise it waits, and is recorded late, once
the upload has had no append for `interval` seconds. An upload in flight is
then recorded about once an interval, and one that pauses or stalls shows
its last offset an interval after its last append.

The late write is the caller's (`write_late`). It runs outside any request,
so it takes the upload's lock like an append does, and leaves the record to
a request that holds it: that request records its own offset when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from upload_service.core.logs import log_event
from upload_service.core.once_per_interval import OncePerInterval

log = logging.getLogger("upload_service.core.progress_pace")

WriteLate = Callable[[str, int, "int | None"], Awaitable[None]]


class ProgressPace:
    def __init__(
        self,
        interval: float,
        write_late: WriteLate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`interval` 0: every offset is recorded at once."""
        self.interval = interval
        self.write_late = write_late
        self._recorded = OncePerInterval(interval, clock)  # when each offset was last recorded
        self._waiting: dict[str, tuple[int, int | None, asyncio.TimerHandle]] = {}
        self._writing: set[asyncio.Task[None]] = set()

    def due(self, upload_id: str, at_once: bool = False) -> bool:
        """Whether this append's offset is to be recorded now (`at_once`: whatever the
        pace); if so, it counts as recorded now, and what waited for the upload is
        dropped (it is older)."""
        if not self._recorded.due(upload_id, anyway=at_once):
            return False
        self._drop_waiting(upload_id)
        return True

    def later(self, upload_id: str, offset: int, length: int | None) -> None:
        """Record this offset once the upload has had no append for an interval."""
        self._drop_waiting(upload_id)
        timer = asyncio.get_running_loop().call_later(self.interval, self._start, upload_id)
        self._waiting[upload_id] = (offset, length, timer)

    def forget(self, upload_id: str) -> None:
        """The upload ended (complete, terminated, discarded): nothing more to record."""
        self._drop_waiting(upload_id)
        self._recorded.forget(upload_id)

    async def flush(self) -> None:
        """Record what waits now, and wait for the late writes under way (shutdown)."""
        for upload_id in list(self._waiting):
            self._start(upload_id)
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    def _drop_waiting(self, upload_id: str) -> None:
        waiting = self._waiting.pop(upload_id, None)
        if waiting is not None:
            waiting[2].cancel()

    def _start(self, upload_id: str) -> None:
        offset, length, timer = self._waiting.pop(upload_id)
        timer.cancel()  # a no-op when it fired: flush() starts the others early
        self._recorded.done(upload_id)
        task = asyncio.get_running_loop().create_task(self._write(upload_id, offset, length))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, upload_id: str, offset: int, length: int | None) -> None:
        try:
            await self.write_late(upload_id, offset, length)
        except Exception as exc:  # the next append or the completion records it
            event = "progress.late_write_failed"
            log_event(log, event, logging.WARNING, upload_id=upload_id, error=str(exc))
