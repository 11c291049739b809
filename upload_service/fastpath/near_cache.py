"""A per-process near cache of status bodies, kept honest by Redis pub/sub.

Backends poll unchanged records over and over; a Redis round trip per poll
costs more than the rest of the request. Every status write (server or
worker) publishes the upload id on CHANNEL in the same round trip as the SET;
each server process listens and drops that entry.

A speed-up, not a feature: without it every poll reads Redis, which answers the
same bodies and ETags and is never staler, so it lives on the fast path only
(the writers publish on CHANNEL either way: a worker cannot know which path a
server runs). A poll that arrives after a
write may still see the old body for the milliseconds the invalidation takes
to arrive, exactly as if it had arrived a little earlier.

The cache is used only while the subscription is up: before it is confirmed,
and from the moment the connection breaks (a Redis restart), every read goes
to Redis and the cache starts empty again. A fill that raced with an
invalidation is dropped (the epoch check), so a stale body is never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

from upload_service.core.logs import log_event
from upload_service.core.status import CHANNEL, StatusReads
from upload_service.fastpath.redis_wire import RedisWire, Reply

log = logging.getLogger("upload_service.fastpath.near_cache")


class NearCache:
    def __init__(self, redis: RedisWire, size: int = 10_000, ttl: float = 10.0) -> None:
        self.redis = redis
        self.size = size
        self.ttl = ttl  # a backstop only: invalidation is what keeps it fresh
        self.live = False
        self.epoch = 0
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def get(self, upload_id: str) -> bytes | None:
        if not self.live:
            return None
        entry = self._entries.get(upload_id)
        if entry is None:
            return None
        body, expires = entry
        if time.monotonic() > expires:
            del self._entries[upload_id]
            return None
        self._entries.move_to_end(upload_id)
        return body

    def put(self, upload_id: str, body: bytes, epoch: int) -> None:
        """Store a body read from Redis when no invalidation arrived since `epoch`."""
        if not self.live or epoch != self.epoch:
            return
        self._entries[upload_id] = (body, time.monotonic() + self.ttl)
        self._entries.move_to_end(upload_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def invalidate(self, upload_id: str) -> None:
        self.epoch += 1
        self._entries.pop(upload_id, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()

    # -- the listener ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken connection: read through until back
                log_event(log, "status_cache.disconnected", logging.WARNING, error=str(exc))
            await asyncio.sleep(0.5)

    async def _listen(self) -> None:
        # On a connection of its own (redis_wire): redis-py's PubSub reader showed
        # in the event loop's profile, with two writes per upload to hear of.
        try:
            await self.redis.listen(CHANNEL, self._on_push)
        finally:
            self.live = False
            self.clear()

    def _on_push(self, push: Reply) -> None:
        kind = push[0]
        if kind == b"message":
            self.invalidate(push[2].decode())
        elif kind == b"subscribe":
            # Only once the subscription is confirmed can no change slip by unseen.
            self.clear()
            self.live = True


class NearCachedReader:
    """A StatusReads that answers from the near cache when it can."""

    def __init__(self, reader: StatusReads, near: NearCache) -> None:
        self.reader = reader
        self.near = near

    async def get_raw(self, upload_id: str) -> bytes | None:
        body = self.near.get(upload_id)
        if body is not None:  # an `uploading` one is checked by the reader now and then
            return await self.reader.checked(upload_id, body)
        epoch = self.near.epoch  # before the read: a change heard meanwhile voids the fill
        body = await self.reader.get_raw(upload_id)
        if body:
            self.near.put(upload_id, body, epoch)
        return body

    async def get_many_raw(self, ids: list[str]) -> list[bytes]:
        return await self.reader.get_many_raw(ids)

    async def checked(self, upload_id: str, cached: bytes) -> bytes:
        return await self.reader.checked(upload_id, cached)
