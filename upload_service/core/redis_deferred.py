"""A worker's Redis chores that wait out a Redis outage instead of failing the job.

The synchronous twin of `core.handoff` (the server's, on the event loop). A
worker's status write goes to the state first, the truth, then refreshes the
Redis cache; a finished job then sends its webhook event through the broker.
If Redis is away at that moment, the job's work is done all the same: failing
it would throw away a transcode for the sake of a cache entry, and the retry
it asks for may itself be lost with Redis. So those chores wait here, by key,
and one daemon thread tries them again every `every` seconds until Redis
answers, oldest first.

While anything waits, new chores queue behind it without trying Redis at all:
each try on a dead Redis stalls for the client's whole retry policy, and a
job's progress writes come about once a second.

A chore deferred under a key that already waits replaces the waiting one (the
later refresh of an upload's cache supersedes the earlier). What waits here
lives in this process only: a worker that dies before Redis returns loses it,
and the sweep's resend (`processors.sweeper`) is the backstop.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from dramatiq.errors import BrokerConnectionError
from redis.exceptions import RedisError

from upload_service.core.jobs import JobQueue
from upload_service.core.logs import log_event

log = logging.getLogger("upload_service.core.redis_deferred")

# What "Redis (or the broker) is away" looks like to a caller.
OUTAGE_ERRORS = (RedisError, BrokerConnectionError, OSError)

RETRY_EVERY = 1.0

Chore = Callable[[], None]


class DeferredChores:
    """Chores that failed on Redis, by key, retried in order from one daemon thread."""

    def __init__(self, every: float = RETRY_EVERY) -> None:
        self.every = every
        self._waiting: dict[str, Chore] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def run(self, key: str, chore: Chore, later: Chore | None = None) -> None:
        """Do `chore` now, unless chores already wait for Redis; if it fails on
        Redis (or cannot be tried), `later` (default: `chore`) waits instead."""
        if not self._waiting:
            try:
                chore()
                return
            except OUTAGE_ERRORS as exc:
                log_event(log, "redis.deferred", logging.WARNING, key=key, error=repr(exc))
        self.defer(key, later or chore)

    def defer(self, key: str, chore: Chore) -> None:
        with self._lock:
            self._waiting.pop(key, None)  # the newer one goes to the back
            self._waiting[key] = chore
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._retry, name="redis-deferred", daemon=True
                )
                self._thread.start()

    def _retry(self) -> None:
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            with self._lock:
                if not self._waiting:
                    self._thread = None
                    return
                key, chore = next(iter(self._waiting.items()))
            try:
                chore()
            except OUTAGE_ERRORS:
                continue  # still away: wait, then start over from the oldest
            except Exception:  # not an outage: retrying will not help
                log.exception("redis.deferred_failed key=%s", key)
            with self._lock:
                if self._waiting.get(key) is chore:  # not replaced meanwhile
                    del self._waiting[key]
                more = bool(self._waiting)
            log_event(log, "redis.caught_up", key=key, more=more)
            if more:
                self._wake.set()  # Redis answers: the rest at once


class DeferringJobQueue:
    """A job queue whose sends wait out a Redis (or broker) outage in `chores`."""

    def __init__(self, inner: JobQueue, chores: DeferredChores) -> None:
        self.inner = inner
        self.chores = chores

    def send(self, actor: str, *args: Any) -> None:
        key = f"send:{actor}:{secrets.token_hex(8)}"
        self.chores.run(key, functools.partial(self.inner.send, actor, *args))
