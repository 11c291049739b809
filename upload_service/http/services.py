"""The server's parts, built once from the settings and handed to the routes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis import Redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from upload_service.core.jobs import DramatiqJobQueue, JobQueue
from upload_service.core.locks import Locker, LockKeys, RedisLocker
from upload_service.core.presence import Presence
from upload_service.core.redis_commands import RedisCommands
from upload_service.core.settings import Settings
from upload_service.core.state import State, make_state
from upload_service.core.status import StatusCache, StatusReader, StatusReads, StatusStore
from upload_service.core.store import UploadStore
from upload_service.core.store.factory import make_store
from upload_service.fastpath.near_cache import NearCache, NearCachedReader
from upload_service.fastpath.redis_wire import RedisWire
from upload_service.fastpath.wire_commands import WireCommands
from upload_service.http.media import MediaSource, make_media_source


class EventLoopRedis(LockKeys, StatusCache, Protocol):
    """The event loop's Redis client: RedisCommands, or WireCommands on the fast path."""

    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...


@dataclass
class Services:
    settings: Settings
    store: UploadStore
    locker: Locker
    state: State  # the durable truth behind the status cache (STATE_URL)
    status: StatusStore
    reader: StatusReads
    jobs: JobQueue
    redis: EventLoopRedis  # locks, the status cache, readiness: everything on the event loop
    sync_redis: Redis  # the Dramatiq broker's and StatusStore's, in threads
    media: MediaSource  # where /media reads published files
    near_cache: NearCache | None = None  # the fast path's, listening while the app runs
    presence: Presence | None = None  # names this process in the locks it holds
    clock: Callable[[], float] = time.time  # the wall clock signed media URLs expire by

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Services:
        """`overrides` replace parts by name (tests: a recording job queue, a store)."""
        # UPLOAD_STORE: the same factory the pipeline and the sweeper use; first,
        # so that a bad setting stops the server before any client is made.
        store = overrides.pop("store", None) or make_store(settings)
        media = overrides.pop("media", None) or make_media_source(settings)
        state = overrides.pop("state", None) or make_state(settings)
        # Two Redis clients, each process of `serve` its own pair. The event loop
        # needs an async one; Dramatiq's RedisBroker is synchronous (its enqueues
        # run in threads, as do StatusStore's calls), and a sync client in the
        # loop would block every request for a round trip. The fast path adds the
        # near cache's subscription, on a connection of the wire client's own.
        sync_redis = Redis.from_url(
            settings.redis_url, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3)
        )
        jobs = overrides.pop("jobs", None) or DramatiqJobQueue.for_settings(settings, sync_redis)
        near_cache = None
        redis: EventLoopRedis
        reader: StatusReads
        if settings.fast_path:
            wire = RedisWire(settings.redis_url)
            redis = WireCommands(wire)
            near_cache = NearCache(wire)
            reader = NearCachedReader(StatusReader(state.status, redis), near_cache)
        else:
            redis = RedisCommands(stock_async_client(settings.redis_url))
            reader = StatusReader(state.status, redis)
        # One connection for the process's life: a dead server's locks are taken over
        # as soon as Redis sees it gone (core.presence).
        presence = Presence(settings.redis_url)
        parts: dict[str, Any] = {
            "settings": settings,
            "store": store,
            "locker": RedisLocker(redis, ttl=settings.lock_ttl, presence=presence),
            "state": state,
            "status": StatusStore(state.status, sync_redis),
            "reader": reader,
            "jobs": jobs,
            "redis": redis,
            "sync_redis": sync_redis,
            "media": media,
            "near_cache": near_cache,
            "presence": presence,
        }
        parts.update(overrides)
        return cls(**parts)

    async def start(self) -> None:
        """What runs beside the requests; needs the running loop, so not in __init__."""
        if self.near_cache is not None:
            self.near_cache.start()

    async def aclose(self) -> None:
        if self.near_cache is not None:
            await self.near_cache.stop()
        await self.redis.aclose()
        if self.presence is not None:
            await self.presence.aclose()
        self.sync_redis.close()
        self.state.close()


def stock_async_client(url: str) -> AsyncRedis:
    # A blocking pool: past its size a request waits for a connection instead
    # of failing (the default pool raised "Too many connections" at 200 pollers).
    # Retries: after a Redis restart every pooled connection is stale; one
    # reconnect-and-retry turns that into a short pause instead of 500s.
    return AsyncRedis.from_pool(
        BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=10,
            retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        )
    )
