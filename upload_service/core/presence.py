"""A process's presence in Redis: one connection of its own, open for as long as it lives.

A lock (`core.locks.RedisLocker`) names its holder by this connection's
CLIENT ID. When the holder's process dies (SIGKILL, OOM, a crashed machine
whose kernel still answers), its sockets close with it, Redis drops the
connection, and `CLIENT LIST ID <id>` comes back empty: a contender knows at
once that the holder is gone, instead of waiting out the lock's TTL.

The connection is nothing else's: a pooled connection may be closed or handed
around while its process lives, and would then tell a lie about the holder.
Redis hands out client ids in increasing order and never reuses one while it
runs, so an id found gone stays gone.

If the connection itself is lost while the process lives (Redis restarted, an
idle `timeout` in redis.conf), the next `client_id()` reconnects and the ids
change; the locker re-stamps its locks with the new id at their next renewal.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

# How long a looked-up id is reused before asking Redis again: a lost connection
# is noticed (and its locks re-stamped) within about this long of a lock's use.
FRESH_FOR = 1.0


class Presence:
    def __init__(self, url: str, fresh_for: float = FRESH_FOR) -> None:
        self._client = Redis.from_url(
            url,
            single_connection_client=True,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        )
        self.fresh_for = fresh_for
        self._id: int | None = None
        self._checked_at = 0.0

    async def client_id(self) -> int:
        """This process's connection's id (connecting, or reconnecting, as needed)."""
        now = time.monotonic()
        if self._id is None or now - self._checked_at > self.fresh_for:
            self._id = int(await self._client.client_id())
            self._checked_at = now
        return self._id

    async def aclose(self) -> None:
        await self._client.aclose()
