"""The fast path's client for what the server's event loop asks of Redis: the
same commands as `core.redis_commands.RedisCommands`, over one pipelined
RedisWire connection (see redis_wire for why, and what it costs less).

Locks (`core.locks.LockKeys`) and the status cache (`core.status.StatusCache`)
mean the same on both paths; only the client differs.
"""

from __future__ import annotations

from upload_service.core.redis_scripts import RELEASE, RENEW, TAKE_OVER
from upload_service.core.status import CACHE_PREFIX, CACHE_TTL, CHANNEL
from upload_service.fastpath.redis_wire import RedisWire


class WireCommands:
    def __init__(self, wire: RedisWire) -> None:
        self.wire = wire

    # -- LockKeys -------------------------------------------------------------------
    async def acquire(self, key: str, value: str, ttl_ms: int) -> bool:
        return bool(await self.wire.execute("SET", key, value, "NX", "PX", ttl_ms))

    # Renewal, release and take-over may run twice (they check the value), so they
    # are sent again if Redis closed the connection under them; taking a lock may not.
    async def renew(self, key: str, value: str, ttl_ms: int) -> bool:
        return bool(await self.wire.run_script(RENEW, [key], [value, ttl_ms], retry_if_lost=True))

    async def release(self, key: str, value: str) -> bool:
        return bool(await self.wire.run_script(RELEASE, [key], [value], retry_if_lost=True))

    async def holder(self, key: str) -> bytes | None:
        value: bytes | None = await self.wire.execute("GET", key, retry_if_lost=True)
        return value

    async def client_alive(self, client_id: int) -> bool:
        listed = await self.wire.execute("CLIENT", "LIST", "ID", client_id, retry_if_lost=True)
        return bool(listed and listed.strip())

    async def take_over(self, key: str, seen: str, value: str, ttl_ms: int) -> bool:
        args: list[str | int] = [seen, value, ttl_ms]
        return bool(await self.wire.run_script(TAKE_OVER, [key], args, retry_if_lost=True))

    # -- StatusCache ----------------------------------------------------------------
    # Reads, refills and refreshes are sent again if Redis closed the connection
    # under them, as redis-py's retries do on the stock path: a poll right after
    # a Redis restart is answered, not failed.
    async def get(self, upload_id: str) -> bytes | None:
        key = CACHE_PREFIX + upload_id
        body: bytes | None = await self.wire.execute("GET", key, retry_if_lost=True)
        return body

    async def get_many(self, upload_ids: list[str]) -> list[bytes | None]:
        keys = [CACHE_PREFIX + upload_id for upload_id in upload_ids]
        bodies: list[bytes | None] = await self.wire.execute("MGET", *keys, retry_if_lost=True)
        return bodies

    async def fill(self, upload_id: str, body: bytes) -> None:
        key = CACHE_PREFIX + upload_id
        await self.wire.execute("SET", key, body, "EX", CACHE_TTL, "NX", retry_if_lost=True)

    async def publish(self, upload_id: str, body: bytes) -> None:
        await self.wire.pipeline(
            ("SET", CACHE_PREFIX + upload_id, body, "EX", CACHE_TTL),
            ("PUBLISH", CHANNEL, upload_id),
            retry_if_lost=True,
        )

    # -- the server's own --------------------------------------------------------------
    async def ping(self) -> None:
        await self.wire.execute("PING", retry_if_lost=True)

    async def aclose(self) -> None:
        await self.wire.aclose()
