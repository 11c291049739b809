"""The status cache on either client (redis-py's asyncio client, the fast path's wire),
the reader in front of it, and the fast path's near cache, against real Redis.

What a backend relies on: a poll answers the latest written body; a cache that lost
its keys (a Redis restart) answers from the files; a worker's write reaches every
server's near cache.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from clock_helpers import Clock
from conftest import RedisServer
from redis.asyncio import Redis as AsyncRedis

from upload_service.core.redis_commands import RedisCommands
from upload_service.core.state.files import FileStatusRecords
from upload_service.core.status import (
    CACHE_PREFIX,
    CHANNEL,
    StatusReader,
    StatusStore,
    encode,
    new_record,
)
from upload_service.core.store.base import UploadInfo
from upload_service.fastpath.near_cache import NearCache, NearCachedReader
from upload_service.fastpath.redis_wire import RedisWire
from upload_service.fastpath.wire_commands import WireCommands

pytestmark = pytest.mark.anyio

Cache = RedisCommands | WireCommands


@pytest.fixture(params=["redis-py", "wire"])
async def cache(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Cache]:
    commands: Cache
    if request.param == "wire":
        commands = WireCommands(RedisWire(redis_server.url))
    else:
        commands = RedisCommands(AsyncRedis.from_url(redis_server.url))
    yield commands
    await commands.aclose()


def a_record(store: StatusStore, state: str) -> str:
    """A status file (the file alone, as the server writes it); its upload id."""
    upload_id = secrets.token_hex(8)
    record = new_record(UploadInfo(upload_id, "user-1", 10, 0, {}))
    record["state"] = state
    store.write_file(record)
    return upload_id


async def test_a_published_body_is_read_back_and_announced(
    cache: Cache, redis_client: redis.Redis
) -> None:
    listener = redis_client.pubsub()
    listener.subscribe(CHANNEL)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    upload_id = secrets.token_hex(8)
    await cache.publish(upload_id, b'{"v":1}')
    await cache.publish(upload_id, b'{"v":2}')
    assert await cache.get(upload_id) == b'{"v":2}'
    heard = [listener.get_message(timeout=5) for _ in range(2)]
    assert [m["data"] for m in heard if m] == [upload_id.encode()] * 2
    assert await cache.get_many([upload_id, "no-such-upload"]) == [b'{"v":2}', None]
    listener.close()


async def test_a_refill_never_overwrites_a_newer_write(
    cache: Cache, redis_client: redis.Redis
) -> None:
    listener = redis_client.pubsub()
    listener.subscribe(CHANNEL)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    upload_id = secrets.token_hex(8)
    await cache.fill(upload_id, b'{"v":"from the file"}')  # a miss, refilled
    assert await cache.get(upload_id) == b'{"v":"from the file"}'
    await cache.publish(upload_id, b'{"v":"written"}')
    # A reader that read the file before that write refills late: the write stands.
    await cache.fill(upload_id, b'{"v":"from the file"}')
    assert await cache.get(upload_id) == b'{"v":"written"}'
    # Only the write was announced: a refill is no change.
    assert listener.get_message(timeout=1)["data"] == upload_id.encode()
    assert listener.get_message(timeout=0.2) is None
    listener.close()


async def test_the_reader_answers_from_the_files_when_the_cache_lost_them(
    cache: Cache, tmp_path: Path, redis_client: redis.Redis
) -> None:
    store = StatusStore(tmp_path / "status", None)
    first, second = a_record(store, "ready"), a_record(store, "failed")
    reader = StatusReader(tmp_path / "status", cache)

    body = await reader.get_raw(first)
    assert body is not None and json.loads(body)["state"] == "ready"
    bodies = await reader.get_many_raw([second, "no-such-upload", first])
    assert [json.loads(b)["state"] for b in bodies] == ["failed", "ready"]
    # Refilled: the next poll is one round trip, and the body is the file's.
    assert redis_client.get(CACHE_PREFIX + second) == encode(
        json.loads((tmp_path / "status" / f"{second}.json").read_bytes())
    )
    assert await reader.get_raw("no-such-upload") is None


# -- the fast path's near cache ------------------------------------------------------------


@pytest.fixture
async def near(redis_server: RedisServer) -> AsyncIterator[tuple[NearCache, WireCommands]]:
    wire = RedisWire(redis_server.url)
    near_cache = NearCache(wire)
    near_cache.start()
    for _ in range(500):  # until its subscription is confirmed
        if near_cache.live:
            break
        await asyncio.sleep(0.01)
    assert near_cache.live
    yield near_cache, WireCommands(wire)
    await near_cache.stop()
    await wire.aclose()


async def poll_until(reader: NearCachedReader, upload_id: str, state: str) -> None:
    for _ in range(500):
        body = await reader.get_raw(upload_id)
        if body is not None and json.loads(body)["state"] == state:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"the reader kept answering an old body instead of {state!r}")


async def test_a_workers_write_reaches_the_near_cache(
    near: tuple[NearCache, WireCommands], tmp_path: Path, redis_server: RedisServer
) -> None:
    near_cache, commands = near
    worker = StatusStore(tmp_path / "status", redis.Redis.from_url(redis_server.url))
    upload_id = a_record(worker, "processing")
    reader = NearCachedReader(StatusReader(tmp_path / "status", commands), near_cache)
    for state in ("processing", "ready", "terminated"):
        if state != "processing":
            worker.update(upload_id, state=state)
        await poll_until(reader, upload_id, state)
        # Served again (from the near cache now), still the latest body.
        body = await reader.get_raw(upload_id)
        assert body is not None and json.loads(body)["state"] == state


class ChangedWhileReading:
    """A reader whose read is overtaken by a write: it answers the body from before."""

    def __init__(self, old: bytes, writer: StatusStore, upload_id: str) -> None:
        self.old, self.writer, self.upload_id = old, writer, upload_id
        self.near: NearCache | None = None

    async def get_raw(self, upload_id: str) -> bytes | None:
        assert self.near is not None
        epoch = self.near.epoch
        self.writer.update(self.upload_id, state="ready")
        for _ in range(500):  # until the near cache has heard of the write
            if self.near.epoch != epoch:
                break
            await asyncio.sleep(0.01)
        return self.old

    async def get_many_raw(self, ids: list[str]) -> list[bytes]:
        return []


async def test_a_body_read_before_a_write_is_not_kept(
    near: tuple[NearCache, WireCommands], tmp_path: Path, redis_server: RedisServer
) -> None:
    near_cache, commands = near
    worker = StatusStore(tmp_path / "status", redis.Redis.from_url(redis_server.url))
    upload_id = a_record(worker, "processing")
    old = (tmp_path / "status" / f"{upload_id}.json").read_bytes()
    stale = ChangedWhileReading(old, worker, upload_id)
    stale.near = near_cache
    racing = NearCachedReader(stale, near_cache)
    body = await racing.get_raw(upload_id)  # this caller gets the old body: it asked first
    assert body is not None and json.loads(body)["state"] == "processing"
    # ...but the near cache did not keep it for the next poll.
    reader = NearCachedReader(StatusReader(tmp_path / "status", commands), near_cache)
    after = await reader.get_raw(upload_id)
    assert after is not None and json.loads(after)["state"] == "ready"


class StaleCache:
    """A cache that keeps answering with the body it was given."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def get(self, upload_id: str) -> bytes | None:
        return self.body

    async def get_many(self, upload_ids: list[str]) -> list[bytes | None]:
        return [self.body for _ in upload_ids]

    async def fill(self, upload_id: str, body: bytes) -> None:
        pass

    async def publish(self, upload_id: str, body: bytes) -> None:
        self.body = body


async def test_a_stale_uploading_in_the_cache_gives_way_to_the_state_within_a_second(
    tmp_path: Path,
) -> None:
    # The cache is compared with the state now and then, not on every poll (a state
    # read per poll cost the status API most of its speed): a second at most.
    clock = Clock(1000.0)
    records = FileStatusRecords(tmp_path)
    uploading = records.write({"id": "in-flight", "owner": "u", "state": "uploading"})
    cache = StaleCache(uploading)
    reader = StatusReader(records, cache, clock=clock)
    assert await reader.get_raw("in-flight") == uploading
    # The last byte's status reached the state while Redis was away; the cache kept
    # the old body.
    uploaded = records.write({"id": "in-flight", "owner": "u", "state": "uploaded"})
    clock.now += 1.0
    assert await reader.get_raw("in-flight") == uploaded
    # Put right in the cache, for every server that reads it.
    assert cache.body == uploaded
