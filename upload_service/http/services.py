"""The server's parts, built once from the settings and handed to the routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from upload_service.core.jobs import DramatiqJobQueue, JobQueue
from upload_service.core.locks import Locker, RedisLocker
from upload_service.core.settings import Settings
from upload_service.core.status import StatusReader, StatusStore
from upload_service.core.store import UploadStore
from upload_service.core.store.factory import make_store
from upload_service.fastpath.near_cache import NearCache
from upload_service.fastpath.redis_wire import RedisWire
from upload_service.http.media import MediaSource, make_media_source


@dataclass
class Services:
    settings: Settings
    store: UploadStore
    locker: Locker
    status: StatusStore
    reader: StatusReader
    jobs: JobQueue
    redis: AsyncRedis
    wire: RedisWire  # the lean connection for what every upload or poll does
    media: MediaSource  # where /media reads published files

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Services:
        # A blocking pool: past its size a request waits for a connection instead
        # of failing (the default pool raised "Too many connections" at 200 pollers).
        # Retries: after a Redis restart every pooled connection is stale; one
        # reconnect-and-retry turns that into a short pause instead of 500s.
        redis = overrides.pop("redis", None) or AsyncRedis.from_pool(
            BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=64,
                timeout=10,
                retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            )
        )
        # Locks, status cache refreshes and the near cache's subscription: see
        # redis_wire for why not redis-py there.
        wire = overrides.pop("wire", None) or RedisWire(settings.redis_url)
        sync_redis = Redis.from_url(
            settings.redis_url, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3)
        )
        parts: dict[str, Any] = {
            "settings": settings,
            # UPLOAD_STORE: the same factory the pipeline and the sweeper use.
            "store": overrides.pop("store", None) or make_store(settings),
            "locker": RedisLocker(wire, ttl=settings.lock_ttl),
            "status": StatusStore(settings.status_dir, sync_redis),
            "reader": StatusReader(settings.status_dir, redis, NearCache(wire)),
            "jobs": DramatiqJobQueue.on_redis(sync_redis),
            "redis": redis,
            "wire": wire,
            "media": make_media_source(settings),
        }
        parts.update(overrides)
        return cls(**parts)
