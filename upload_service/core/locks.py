"""Per-upload exclusive locks: Redis for real (shared by server processes), memory for tests.

A second writer is refused at once (423) instead of queued: a tus client that
gets 423 does HEAD and retries, and a queued PATCH could never match its offset.

What a lock means (its holder's token, its TTL and renewal, compare-and-delete)
lives here, in RedisLocker; the three Redis commands it needs are a LockKeys,
carried out by redis-py (`core.redis_commands`) or by the fast path's wire client
(`fastpath.wire_commands`), as UPLOAD_FAST_PATH chooses.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Protocol

import anyio
from redis.exceptions import RedisError

from upload_service.core.errors import Locked

log = logging.getLogger("upload_service.core.locks")


class Locker(Protocol):
    def lock(self, key: str) -> AbstractAsyncContextManager[None]: ...


class LockKeys(Protocol):
    """A lock key's three commands; renew and release act only while `token` holds it
    (the scripts of `core.redis_scripts`)."""

    async def acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        """SET NX PX: True when the key was free and now holds `token`."""
        ...

    async def renew(self, key: str, token: str, ttl_ms: int) -> bool:
        """Extend the key's TTL; False when it no longer holds `token`."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Delete the key; False (and nothing deleted) when it no longer holds `token`."""
        ...


class MemoryLocker:
    def __init__(self) -> None:
        self._held: set[str] = set()

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        if key in self._held:
            raise Locked()
        self._held.add(key)
        try:
            yield
        finally:
            self._held.discard(key)


class RedisLocker:
    """SET NX with a short TTL, renewed while held.

    The TTL is short (default 8 s, renewed every third of it) because it is
    also how long a SIGKILLed server's uploads stay locked: a client resuming
    after a crash gets 423 only for that long. A holder that finds its lock
    gone (its loop stalled past the TTL) is cancelled rather than write on
    beside a new holder.
    """

    def __init__(self, keys: LockKeys, ttl: float = 8.0, prefix: str = "upload-lock:") -> None:
        self.keys = keys
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        key = self.prefix + key
        token = secrets.token_hex(16)
        if not await self.keys.acquire(key, token, self.ttl_ms):
            raise Locked()
        renewal = _Renewal(self, key, token, asyncio.current_task())
        try:
            yield
        finally:
            renewal.stop()
            # Shielded: a cancelled request (anyio cancels level-triggered) must
            # still release its lock, or its upload answers 423 for a TTL. An
            # extension still in flight is harmless: both scripts check the token.
            with anyio.CancelScope(shield=True):
                with suppress(RedisError, TimeoutError):  # unreleased, it expires with its TTL
                    async with asyncio.timeout(self.ttl_ms / 1000):
                        await self.keys.release(key, token)


class _Renewal:
    """Extends a held lock every third of its TTL, from a timer.

    A timer, not a task per lock: most PATCHes end long before the first
    renewal, and a task (with its waits and its cancellation on release) per
    request was measurable under 100 concurrent uploads. Stopping never waits
    for Redis, so release cannot hang on a renewal (redis-py can swallow a
    cancel that lands inside a command: a request once hung that way).
    """

    def __init__(
        self, locker: RedisLocker, key: str, token: str, holder: asyncio.Task[object] | None
    ) -> None:
        self.locker = locker
        self.key = key
        self.token = token
        self.holder = holder
        self.stopped = False
        self.loop = asyncio.get_running_loop()
        self.interval = locker.ttl_ms / 3000
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(self.interval, self._due)
        self.extending: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        if self.extending is not None:
            self.extending.cancel()

    def _due(self) -> None:
        self.timer = None
        if not self.stopped:
            self.extending = self.loop.create_task(self._extend())

    async def _extend(self) -> None:
        try:
            kept = await self.locker.keys.renew(self.key, self.token, self.locker.ttl_ms)
        except RedisError as exc:  # a passing outage: the TTL leaves room to retry
            log.warning("lock.renew_failed", extra={"fields": {"key": self.key, "error": str(exc)}})
            kept = True
        if self.stopped:
            return
        if not kept:
            log.error("lock.lost", extra={"fields": {"key": self.key}})
            if self.holder is not None:
                self.holder.cancel()
            return
        self.timer = self.loop.call_later(self.interval, self._due)
