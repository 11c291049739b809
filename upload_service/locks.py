"""Per-upload exclusive locks: Redis for real (shared by server processes), memory for tests.

A second writer is refused at once (423) instead of queued: a tus client that
gets 423 does HEAD and retries, and a queued PATCH could never match its offset.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Protocol

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import Locked

log = logging.getLogger("upload_service.locks")

# Delete the key only if it still holds our token: never release someone else's lock.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class Locker(Protocol):
    def lock(self, key: str) -> AbstractAsyncContextManager[None]: ...


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

    def __init__(self, redis: Redis, ttl: float = 8.0, prefix: str = "upload-lock:") -> None:
        self.redis = redis
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        key = self.prefix + key
        token = secrets.token_hex(16)
        if not await self.redis.set(key, token, nx=True, px=self.ttl_ms):
            raise Locked()
        done = asyncio.Event()
        renewer = asyncio.create_task(self._renew(key, token, asyncio.current_task(), done))
        try:
            yield
        finally:
            # Stop the renewer by a flag, not by cancellation alone: redis-py can
            # swallow a cancel that lands inside a command, and a bare `await
            # renewer` then hung the request (seen under 100 concurrent uploads).
            done.set()
            renewer.cancel()
            # Shielded: a cancelled request (anyio cancels level-triggered) must
            # still release its lock, or its upload answers 423 for a TTL.
            with anyio.CancelScope(shield=True):
                await asyncio.wait({renewer}, timeout=self.ttl_ms / 1000)
                with suppress(RedisError, TimeoutError):  # unreleased, it expires with its TTL
                    await asyncio.wait_for(
                        self.redis.eval(_RELEASE, 1, key, token), timeout=self.ttl_ms / 1000
                    )

    async def _renew(
        self, key: str, token: str, holder: asyncio.Task[object] | None, done: asyncio.Event
    ) -> None:
        while not done.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self.ttl_ms / 3000)
            if done.is_set():
                return
            try:
                kept = await self.redis.eval(_EXTEND, 1, key, token, self.ttl_ms)
            except RedisError as exc:  # a passing outage: the TTL leaves room to retry
                log.warning("lock.renew_failed", extra={"fields": {"key": key, "error": str(exc)}})
                continue
            if not kept and not done.is_set():
                log.error("lock.lost", extra={"fields": {"key": key}})
                if holder is not None:
                    holder.cancel()
                return
