"""The last byte's hand-off to the pipeline, made durable against a Redis outage.

When an upload completes, its status file says `uploaded` first (the truth, on
disk), then the status cache is refreshed and `process_upload` is sent, both
through Redis. If Redis is away at that moment the upload is complete all the
same: the client is told so, and the hand-off waits here and is tried again,
every few seconds at first, then every RETRY_MAX seconds, until Redis answers.
If this process dies with hand-offs still waiting, the sweep finds the
`uploaded` status older than PIPELINE_RESEND_AFTER and sends the job itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from upload_service.core.logs import log_event

log = logging.getLogger("upload_service.core.handoff")

RETRY_FIRST = 1.0
RETRY_MAX = 30.0

HandOff = Callable[[], Awaitable[None]]


class PendingHandoffs:
    """Hand-offs that failed on Redis, by upload id, retried from one task."""

    def __init__(self, first: float = RETRY_FIRST, most: float = RETRY_MAX) -> None:
        self.first = first
        self.most = most
        self.pending: dict[str, HandOff] = {}
        self._task: asyncio.Task[None] | None = None

    async def run(self, upload_id: str, hand_off: HandOff) -> None:
        """Try `hand_off` now; if Redis fails it, keep it and retry in the background."""
        try:
            await hand_off()
        except (RedisError, OSError) as exc:
            log_event(log, "handoff.deferred", logging.WARNING, upload_id=upload_id, error=str(exc))
            self.pending[upload_id] = hand_off
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        delay = self.first
        while self.pending:
            await asyncio.sleep(delay)
            for upload_id, hand_off in list(self.pending.items()):
                try:
                    await hand_off()
                except (RedisError, OSError):
                    break  # still away: wait longer, then start over
                del self.pending[upload_id]
                log_event(log, "handoff.resent", upload_id=upload_id)
            delay = min(delay * 2, self.most)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
