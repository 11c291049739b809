"""Per-upload exclusive locks: Redis for real (shared by server processes), memory for tests.

A second writer is refused at once (423, with Retry-After) instead of queued: a
tus client that gets 423 does HEAD and retries, and a queued PATCH could never
match its offset. The one wait is for a brief hold of this
process (a late status write, core.progress_pace): it lasts a moment, holds no
bytes, and a client's resumed PATCH should not pay a 423 and a retry for it.

What a lock means lives here, in RedisLocker: its value names its holder (the
holder process's Redis connection, `core.presence`) and carries a random
token; it has a TTL, renewed while held; it is released by compare-and-delete.
A contender that finds the holder's connection gone takes the lock over at
once, by compare-and-set, so a crashed server's uploads resume as soon as a
client retries; the TTL is left for the holder that is alive but cut off. The
Redis commands it needs are a LockKeys, carried out by redis-py
(`core.redis_commands`) or by the fast path's wire client
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
from redis.exceptions import RedisError, ResponseError

from upload_service.core.errors import Locked, ServiceError
from upload_service.core.logs import log_event
from upload_service.core.presence import Presence

log = logging.getLogger("upload_service.core.locks")

# What a 423 tells the client: the holder is alive and writing; a PATCH usually
# ends within a second or so, and a client that then HEADs finds the new offset.
RETRY_AFTER = "1"


def locked(message: str | None = None) -> ServiceError:
    return Locked(message, headers={"Retry-After": RETRY_AFTER})


class LockHold(Protocol):
    async def confirm(self) -> None:
        """Raise Locked unless the lock is still ours (before committing what it guarded)."""
        ...


class Locker(Protocol):
    def lock(self, key: str, brief: bool = False) -> AbstractAsyncContextManager[LockHold]:
        """`brief`: a hold of a moment outside any request (a late status write): a
        request of this process that wants the key meanwhile waits for it, not a 423."""
        ...


class LockKeys(Protocol):
    """A lock key's commands; renew and release act only while `value` holds it
    (the scripts of `core.redis_scripts`)."""

    async def acquire(self, key: str, value: str, ttl_ms: int) -> bool:
        """SET NX PX: True when the key was free and now holds `value`."""
        ...

    async def renew(self, key: str, value: str, ttl_ms: int) -> bool:
        """Extend the key's TTL; False when it no longer holds `value`."""
        ...

    async def release(self, key: str, value: str) -> bool:
        """Delete the key; False (and nothing deleted) when it no longer holds `value`."""
        ...

    async def holder(self, key: str) -> bytes | None:
        """The key's value: who holds it now (None: nobody)."""
        ...

    async def client_alive(self, client_id: int) -> bool:
        """Whether Redis still has a connection with this CLIENT ID."""
        ...

    async def take_over(self, key: str, seen: str, value: str, ttl_ms: int) -> bool:
        """Set the key to `value` (with a new TTL) if it still holds `seen`."""
        ...


class _NothingToConfirm:
    async def confirm(self) -> None:
        pass


class MemoryLocker:
    def __init__(self) -> None:
        self._held: set[str] = set()

    @asynccontextmanager
    async def lock(self, key: str, brief: bool = False) -> AsyncIterator[LockHold]:
        if key in self._held:
            raise locked()
        self._held.add(key)
        try:
            yield _NothingToConfirm()
        finally:
            self._held.discard(key)


NO_PRESENCE = "-"  # a holder that named no connection: only its TTL frees its lock


def holder_client_id(value: bytes | str) -> int | None:
    """The CLIENT ID a lock's value names (`<id>:<token>`), or None."""
    text = value.decode() if isinstance(value, bytes) else value
    client, sep, _ = text.partition(":")
    return int(client) if sep and client.isdigit() else None


class RedisLocker:
    """SET NX with a TTL, renewed while held; a dead holder's lock is taken over.

    The TTL (default 8 s, renewed every third of it) is the last resort: it
    frees the lock of a holder whose process lives but lost Redis (a stalled
    loop, a partition). A holder that finds its lock gone is cancelled rather
    than write on beside a new holder, and `confirm()` checks again before an
    append's offset is recorded.
    """

    def __init__(
        self,
        keys: LockKeys,
        ttl: float = 8.0,
        prefix: str = "upload-lock:",
        presence: Presence | None = None,
    ) -> None:
        self.keys = keys
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix
        self.presence = presence
        self._brief: dict[str, asyncio.Event] = {}  # brief holds of this process, set on release

    async def holder_value(self, token: str) -> str:
        client = await self.presence.client_id() if self.presence else NO_PRESENCE
        return f"{client}:{token}"

    @asynccontextmanager
    async def lock(self, key: str, brief: bool = False) -> AsyncIterator[LockHold]:
        key = self.prefix + key
        briefly_held = self._brief.get(key)
        if briefly_held is not None:  # a moment's wait spares a client a 423 and a retry
            with anyio.move_on_after(self.ttl_ms / 1000):
                await briefly_held.wait()
        token = secrets.token_hex(16)
        value = await self.holder_value(token)
        taken = await self.keys.acquire(key, value, self.ttl_ms)
        if not taken and not await self._take_from_dead_holder(key, value):
            raise locked()
        released = asyncio.Event() if brief else None
        if released is not None:
            self._brief[key] = released
        hold = _Hold(self, key, token, value, asyncio.current_task())
        try:
            yield hold
        finally:
            hold.stop()
            # Shielded: a cancelled request (anyio cancels level-triggered) must
            # still release its lock, or its upload answers 423 for a TTL. An
            # extension still in flight is harmless: both scripts check the value.
            with anyio.CancelScope(shield=True):
                with suppress(RedisError, TimeoutError):  # unreleased, it expires with its TTL
                    async with asyncio.timeout(self.ttl_ms / 1000):
                        await self.keys.release(key, hold.value)
            if released is not None:
                del self._brief[key]
                released.set()

    async def _take_from_dead_holder(self, key: str, value: str) -> bool:
        seen = await self.keys.holder(key)
        if seen is None:  # released between the two commands
            return await self.keys.acquire(key, value, self.ttl_ms)
        client = holder_client_id(seen)
        if client is None:
            return False
        try:
            if await self.keys.client_alive(client):
                return False
        except ResponseError:  # CLIENT not allowed to this user: the TTL decides
            return False
        taken = await self.keys.take_over(key, seen.decode(), value, self.ttl_ms)
        if taken:
            log_event(log, "lock.taken_over", logging.WARNING, key=key, dead_client=client)
        return taken


class _Hold:
    """A held lock: extended every third of its TTL from a timer, re-stamped with the
    process's new connection id if that changed, confirmed on request.

    A timer, not a task per lock: most PATCHes end long before the first
    renewal, and a task (with its waits and its cancellation on release) per
    request was measurable under 100 concurrent uploads. Stopping never waits
    for Redis, so release cannot hang on a renewal (redis-py can swallow a
    cancel that lands inside a command: a request once hung that way).
    """

    def __init__(
        self,
        locker: RedisLocker,
        key: str,
        token: str,
        value: str,
        holder: asyncio.Task[object] | None,
    ) -> None:
        self.locker = locker
        self.key = key
        self.token = token
        self.value = value
        self.holder = holder
        self.stopped = False
        self.loop = asyncio.get_running_loop()
        self.interval = locker.ttl_ms / 3000
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(self.interval, self._due)
        self.extending: asyncio.Task[None] | None = None

    async def confirm(self) -> None:
        try:
            kept = await self._renew()
        except RedisError as exc:
            # Redis is away: no contender can take the lock over either, and the
            # bytes are stored; what follows (the status file first) must go on.
            log_event(log, "lock.unconfirmed", logging.WARNING, key=self.key, error=str(exc))
            return
        if not kept:
            log_event(log, "lock.lost", logging.ERROR, key=self.key)
            raise locked("this upload's lock passed to another request; HEAD, then resume")

    async def _renew(self) -> bool:
        value = await self.locker.holder_value(self.token)
        keys, ttl_ms = self.locker.keys, self.locker.ttl_ms
        if value == self.value:
            return await keys.renew(self.key, value, ttl_ms)
        # This process's connection changed: name the new one, or a contender
        # would find the old one gone and take the lock of a live holder.
        kept = await keys.take_over(self.key, self.value, value, ttl_ms)
        if kept:
            self.value = value
        return kept

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
            kept = await self._renew()
        except RedisError as exc:  # a passing outage: the TTL leaves room to retry
            log_event(log, "lock.renew_failed", logging.WARNING, key=self.key, error=str(exc))
            kept = True
        if self.stopped:
            return
        if not kept:
            log_event(log, "lock.lost", logging.ERROR, key=self.key)
            if self.holder is not None:
                self.holder.cancel()
            return
        self.timer = self.loop.call_later(self.interval, self._due)
