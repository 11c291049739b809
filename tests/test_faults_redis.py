"""Redis away at the worst moments: nothing is lost and nothing stays stuck.

The service reaches Redis through the fault proxy here, so Redis can vanish for
the service alone (connections reset, new ones refused) while its keys survive,
as in a network partition or a failover.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import redis
from conftest import RedisServer
from fault_proxy import FaultProxy
from protocol_helpers import app_client

from upload_service.core.jobs import DramatiqJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import CACHE_PREFIX, encode

pytestmark = pytest.mark.anyio

DB = 11  # this module's own database in the session's Redis


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    direct = redis.Redis(port=redis_server.port, db=DB)
    direct.flushdb()
    direct.close()
    proxied = FaultProxy(("127.0.0.1", redis_server.port)).start()
    yield proxied
    proxied.stop()


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, db=DB)
    yield client
    client.close()


@pytest.fixture
async def service(settings: Settings, proxy: FaultProxy) -> AsyncIterator[httpx.AsyncClient]:
    proxied = Settings(**{**settings.__dict__, "redis_url": f"redis://{proxy.address}/{DB}"})
    jobs = DramatiqJobQueue.on_redis(redis.Redis.from_url(proxied.redis_url))
    async with app_client(proxied, jobs) as client:  # type: ignore[arg-type]
        yield client


def tus(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


async def test_the_last_byte_during_a_redis_outage_completes_and_its_job_follows(
    service: httpx.AsyncClient,
    proxy: FaultProxy,
    direct: redis.Redis,
    settings: Settings,
    make_token: object,
) -> None:
    token = make_token()  # type: ignore[operator]
    size = 256 * 1024
    created = await service.post("/files/", headers=tus(token, **{"Upload-Length": str(size)}))
    upload_id = created.headers["location"].rsplit("/", 1)[-1]
    halfway = asyncio.Event()
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield os.urandom(size // 2)
        halfway.set()
        await go_on.wait()
        yield os.urandom(size // 2)

    headers = tus(
        token, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    )
    headers["Content-Length"] = str(size)
    patch = asyncio.ensure_future(
        service.patch(f"/files/{upload_id}", content=body(), headers=headers)
    )
    await halfway.wait()
    proxy.mode = "refuse"  # Redis gone for the service, mid-body
    proxy.reset_all()
    go_on.set()
    answer = await patch
    assert answer.status_code == 204, answer.text  # the bytes are all stored: complete
    record = json.loads((settings.data_dir / "status" / f"{upload_id}.json").read_bytes())
    assert record["state"] == "uploaded"
    assert direct.hlen("dramatiq:media.msgs") == 0  # not sent: Redis was away

    proxy.mode = "pass"  # back: the hand-off is made without anyone asking
    for _ in range(600):
        if direct.hlen("dramatiq:media.msgs"):
            break
        await anyio.sleep(0.1)
    (message,) = direct.hvals("dramatiq:media.msgs")
    assert json.loads(message)["args"] == [upload_id]
    status = await service.get(
        f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {settings.api_key}"}
    )
    assert status.json()["state"] == "uploaded"


async def test_the_status_api_never_serves_an_uploading_the_file_contradicts(
    service: httpx.AsyncClient, direct: redis.Redis, settings: Settings, make_token: object
) -> None:
    token = make_token()  # type: ignore[operator]
    api = {"Authorization": f"Bearer {settings.api_key}"}

    async def finished_while_redis_was_away() -> str:
        created = await service.post("/files/", headers=tus(token, **{"Upload-Length": "10"}))
        upload_id = created.headers["location"].rsplit("/", 1)[-1]
        path = settings.data_dir / "status" / f"{upload_id}.json"
        record = json.loads(path.read_bytes())
        assert record["state"] == "uploading"
        # The file moved on while Redis was away; the cache kept the old body.
        path.write_bytes(encode({**record, "state": "uploaded", "offset": 10}))
        direct.set(CACHE_PREFIX + upload_id, encode(record))
        return upload_id

    one = await finished_while_redis_was_away()
    assert (await service.get(f"/v1/uploads/{one}", headers=api)).json()["state"] == "uploaded"
    assert json.loads(direct.get(CACHE_PREFIX + one) or b"{}")["state"] == "uploaded"
    other = await finished_while_redis_was_away()
    many = await service.get(f"/v1/uploads?ids={other}", headers=api)
    assert [u["state"] for u in many.json()["uploads"]] == ["uploaded"]
    assert json.loads(direct.get(CACHE_PREFIX + other) or b"{}")["state"] == "uploaded"
