"""The stock client for what the server's event loop asks of Redis: redis-py's asyncio
client (with hiredis, which redis-py picks up when installed).

One object carries out both seams of the event loop (`core.locks.LockKeys`,
`core.status.StatusCache`) on the client it is given; the fast path's
counterpart is `fastpath.wire_commands.WireCommands`.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from upload_service.core.redis_scripts import async_lock_scripts
from upload_service.core.status import CACHE_PREFIX, CACHE_TTL, CHANNEL


class RedisCommands:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self.scripts = async_lock_scripts(client)

    # -- LockKeys -------------------------------------------------------------------
    async def acquire(self, key: str, value: str, ttl_ms: int) -> bool:
        return bool(await self.client.set(key, value, px=ttl_ms, nx=True))

    async def renew(self, key: str, value: str, ttl_ms: int) -> bool:
        return bool(await self.scripts.renew(keys=[key], args=[value, ttl_ms]))

    async def release(self, key: str, value: str) -> bool:
        return bool(await self.scripts.release(keys=[key], args=[value]))

    async def holder(self, key: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(key))

    async def client_alive(self, client_id: int) -> bool:
        return bool(await self.client.client_list(client_id=[client_id]))

    async def take_over(self, key: str, seen: str, value: str, ttl_ms: int) -> bool:
        return bool(await self.scripts.take_over(keys=[key], args=[seen, value, ttl_ms]))

    # -- StatusCache ----------------------------------------------------------------
    async def get(self, upload_id: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(CACHE_PREFIX + upload_id))

    async def get_many(self, upload_ids: list[str]) -> list[bytes | None]:
        keys = [CACHE_PREFIX + upload_id for upload_id in upload_ids]
        return cast(list[bytes | None], await self.client.mget(keys))

    async def fill(self, upload_id: str, body: bytes) -> None:
        await self.client.set(CACHE_PREFIX + upload_id, body, ex=CACHE_TTL, nx=True)

    async def publish(self, upload_id: str, body: bytes) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(CACHE_PREFIX + upload_id, body, ex=CACHE_TTL)
            pipe.publish(CHANNEL, upload_id)
            await pipe.execute()

    # -- the server's own --------------------------------------------------------------
    async def ping(self) -> None:
        await self.client.ping()

    async def aclose(self) -> None:
        await self.client.aclose()
