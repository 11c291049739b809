"""Per-user limits on creating uploads: how many may be unfinished, and how fast.

A user is a token's `sub`. Two limits, each answered `429` with `Retry-After`:

- **unfinished uploads** (UPLOAD_MAX_UNFINISHED): counted through
  `UnfinishedUploads`. With PostgreSQL state the database counts them itself
  (`StateUnfinishedUploads`: an indexed query, the truth, shared by every
  machine). With local files, where a count would read every record, a Redis
  set per user keeps it, maintained by the server's hooks (created: add;
  finished, terminated, discarded: remove) and the sweep (expired, retired:
  remove). A set can only drift upwards (a process that died between two steps),
  so a user found at the limit has the set checked against the status records
  first, and entries no longer `uploading` are dropped.
- **creation rate** (UPLOAD_CREATION_RATE per UPLOAD_CREATION_WINDOW seconds): a
  sliding window, one sorted set per user in Redis scored by time, checked and
  added to in one script so that concurrent creations cannot overshoot.

Creating is not the hot path, so these run on the synchronous client in a
worker thread (`Quotas.admit` and friends are async wrappers).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis import Redis

from upload_service.core.errors import CreationRateLimited, TooManyUploads
from upload_service.core.state import State
from upload_service.core.threads import run_blocking

UNFINISHED_PREFIX = "upload-quota:unfinished:"
CREATED_PREFIX = "upload-quota:created:"
# What a user at the unfinished limit is told to wait: finishing or deleting an
# upload frees a place at once, so this only paces a client that retries blindly.
UNFINISHED_RETRY_AFTER = 60


class UnfinishedUploads(Protocol):
    """A user's unfinished uploads, as the state layer counts them."""

    def count(self, owner: str) -> int: ...
    def add(self, owner: str, upload_id: str) -> None: ...
    def remove(self, owner: str, upload_id: str) -> None: ...
    def repair(self, owner: str, still_unfinished: Callable[[str], bool]) -> int:
        """Drop what is no longer unfinished; the count after."""
        ...


class RedisUnfinishedUploads:
    """A Redis set of upload ids per user."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def count(self, owner: str) -> int:
        return int(self.redis.scard(UNFINISHED_PREFIX + owner))

    def add(self, owner: str, upload_id: str) -> None:
        self.redis.sadd(UNFINISHED_PREFIX + owner, upload_id)

    def remove(self, owner: str, upload_id: str) -> None:
        self.redis.srem(UNFINISHED_PREFIX + owner, upload_id)

    def repair(self, owner: str, still_unfinished: Callable[[str], bool]) -> int:
        key = UNFINISHED_PREFIX + owner
        for raw in self.redis.smembers(key):
            upload_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not still_unfinished(upload_id):
                self.redis.srem(key, upload_id)
        return self.count(owner)


# KEYS[1]: the user's window; ARGV: now (ms), window (ms), limit, a unique member.
# Returns 0 when admitted (and counted), else the milliseconds until a place frees.
SLIDING_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('zremrangebyscore', KEYS[1], '-inf', now - window)
if redis.call('zcard', KEYS[1]) < limit then
  redis.call('zadd', KEYS[1], now, ARGV[4])
  redis.call('pexpire', KEYS[1], window)
  return 0
end
local oldest = redis.call('zrange', KEYS[1], 0, 0, 'withscores')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class RedisCreationRate:
    """At most `limit` creations per user in any `window` seconds."""

    def __init__(self, redis: Redis, limit: int, window: float) -> None:
        self.limit = limit
        self.window_ms = max(1, int(window * 1000))
        self.script = redis.register_script(SLIDING_WINDOW)

    def take(self, owner: str) -> float:
        """0 when this creation may go ahead (it is counted), else seconds to wait."""
        now_ms = int(time.time() * 1000)
        member = f"{now_ms}-{secrets.token_hex(4)}"
        wait_ms = int(
            self.script(
                keys=[CREATED_PREFIX + owner], args=[now_ms, self.window_ms, self.limit, member]
            )
        )
        return wait_ms / 1000


class StateUnfinishedUploads:
    """The state's own count (PostgreSQL): nothing to keep, nothing to drift."""

    def __init__(self, state: State) -> None:
        self.state = state

    def count(self, owner: str) -> int:
        return self.state.count_unfinished(owner)

    def add(self, owner: str, upload_id: str) -> None:
        pass  # the upload's own record counts it

    def remove(self, owner: str, upload_id: str) -> None:
        pass

    def repair(self, owner: str, still_unfinished: Callable[[str], bool]) -> int:
        return self.count(owner)


@dataclass(frozen=True)
class QuotaLimits:
    max_unfinished: int  # 0: no limit
    creation_rate: int  # 0: no limit
    creation_window: float


class Quotas:
    """What the server asks before a creation, and tells after each change."""

    def __init__(
        self,
        limits: QuotaLimits,
        unfinished: UnfinishedUploads,
        rate: RedisCreationRate | None,
        still_unfinished: Callable[[str], bool],
    ) -> None:
        self.limits = limits
        self.unfinished = unfinished
        self.rate = rate
        self.still_unfinished = still_unfinished

    @classmethod
    def on_redis(
        cls,
        redis: Redis,
        limits: QuotaLimits,
        still_unfinished: Callable[[str], bool],
        unfinished: UnfinishedUploads | None = None,
    ) -> Quotas:
        """The rate always in Redis; the unfinished count there unless `unfinished`."""
        rate = (
            RedisCreationRate(redis, limits.creation_rate, limits.creation_window)
            if limits.creation_rate
            else None
        )
        return cls(limits, unfinished or RedisUnfinishedUploads(redis), rate, still_unfinished)

    def admit_now(self, owner: str) -> None:
        """Raise 429 when `owner` may not create an upload now; else count the creation."""
        limit = self.limits.max_unfinished
        # A set at the limit is checked against the records before it refuses anyone.
        if (
            limit
            and self.unfinished.count(owner) >= limit
            and self.unfinished.repair(owner, self.still_unfinished) >= limit
        ):
            raise TooManyUploads(
                f"{limit} unfinished uploads already: finish or delete some first",
                headers={"Retry-After": str(UNFINISHED_RETRY_AFTER)},
            )
        if self.rate is not None:
            wait = self.rate.take(owner)
            if wait > 0:
                raise CreationRateLimited(
                    f"more than {self.limits.creation_rate} uploads created in "
                    f"{self.limits.creation_window:g} s; retry in {math.ceil(wait)} s",
                    headers={"Retry-After": str(math.ceil(wait))},
                )

    async def admit(self, owner: str) -> None:
        await run_blocking(self.admit_now, owner)

    async def started(self, owner: str, upload_id: str) -> None:
        if self.limits.max_unfinished:
            await run_blocking(self.unfinished.add, owner, upload_id)

    async def ended(self, owner: str, upload_id: str) -> None:
        """Finished, terminated, expired or discarded: no longer unfinished."""
        if self.limits.max_unfinished:
            await run_blocking(self.unfinished.remove, owner, upload_id)
