"""The server's status writes (upload_service.core.lifecycle): the file, then the Redis cache
and every server's near cache, then the announcement (webhooks, the pipeline), in that
order, so that whoever hears of an event reads a status that already shows it.

On both paths: the stock status cache (redis-py) and the fast path's (the wire client)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from conftest import API_KEY
from protocol_helpers import create, patch

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import CACHE_PREFIX, CHANNEL

pytestmark = pytest.mark.anyio


class CacheWitness(MemoryJobQueue):
    """A job queue that notes what the status cache held when each message was sent."""

    def __init__(self, redis_client: redis.Redis) -> None:
        super().__init__()
        self.redis = redis_client
        self.cached_states: list[tuple[str, str | None]] = []

    def send(self, actor: str, *args: Any) -> None:
        upload_id = args[0] if actor == "process_upload" else args[0]["data"]["id"]
        cached = self.redis.get(CACHE_PREFIX + upload_id)
        self.cached_states.append((actor, json.loads(cached)["state"] if cached else None))
        super().send(actor, *args)


@pytest.fixture(params=[True, False], ids=["fast-path", "stock"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # Webhooks on: announced as jobs, which nothing delivers here.
    return dataclasses.replace(
        settings,
        fast_path=request.param,
        webhook_url="http://127.0.0.1:9/hooks",
        webhook_secret="whsec_" + "a" * 32,
    )


@pytest.fixture
def jobs(redis_client: redis.Redis) -> CacheWitness:
    return CacheWitness(redis_client)


async def test_an_event_is_announced_only_once_the_cache_shows_it(
    client: httpx.AsyncClient, jobs: CacheWitness, make_token: Callable
) -> None:
    token = make_token()
    upload_id = await create(client, token, length=10)
    assert (await patch(client, token, upload_id, 0, b"0123456789")).status_code == 204
    assert jobs.cached_states == [
        ("deliver_webhook", "uploading"),  # upload.created
        ("process_upload", "uploaded"),
        ("deliver_webhook", "uploaded"),  # upload.completed
    ]
    status = await client.get(
        f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert status.json()["state"] == "uploaded"


async def test_each_write_refreshes_the_cache_and_tells_the_near_caches(
    client: httpx.AsyncClient, redis_client: redis.Redis, make_token: Callable, settings: Settings
) -> None:
    listener = redis_client.pubsub()
    listener.subscribe(CHANNEL)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    token = make_token()
    upload_id = await create(client, token, length=10)
    assert (await patch(client, token, upload_id, 0, b"01234")).status_code == 204
    heard = [listener.get_message(timeout=5) for _ in range(2)]
    assert [m["data"] for m in heard if m] == [upload_id.encode()] * 2  # created, progressed
    cached = json.loads(redis_client.get(CACHE_PREFIX + upload_id) or b"{}")
    on_disk = json.loads((settings.status_dir / f"{upload_id}.json").read_bytes())
    assert cached == on_disk and cached["offset"] == 5 and cached["state"] == "uploading"
    listener.close()
