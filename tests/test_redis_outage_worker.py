"""A worker's side of a Redis outage, part by part: status writes and events that
wait out Redis, a pipeline lock put back after Redis lost it, and the look for
jobs lost with a Redis that restarted empty.

Redis vanishes through the fault proxy (keys survive, as in a partition) or has
its keys deleted (as a restart would); the whole story, with real processes and
a real restart, is tests/test_faults_redis_job.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import anyio.to_thread
import httpx
import pytest
import redis
from conftest import RedisServer
from fault_proxy import FaultProxy
from live_helpers import wait_until
from tus_helpers import finished_upload

from processors.joblock import KEY_PREFIX, JobLock
from processors.lost_jobs import EPOCH_KEY, marks_new_redis, resend_lost_jobs
from upload_service.core.jobs import DramatiqJobQueue, MemoryJobQueue
from upload_service.core.redis_deferred import DeferredChores, DeferringJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import CACHE_PREFIX, StatusStore

DB = 14  # this module's own database in the session's Redis


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, db=DB)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    proxied = FaultProxy(("127.0.0.1", redis_server.port)).start()
    yield proxied
    proxied.stop()


def record_of(upload_id: str) -> dict[str, object]:
    return {"id": upload_id, "owner": "user-1", "state": "processing", "progress": None}


def test_status_writes_and_events_wait_out_redis(
    settings: Settings, direct: redis.Redis, proxy: FaultProxy
) -> None:
    through_proxy = redis.Redis.from_url(f"redis://{proxy.address}/{DB}")
    chores = DeferredChores(every=0.1)
    status = StatusStore(settings.status_dir, through_proxy, deferred=chores)
    jobs = DeferringJobQueue(DramatiqJobQueue.on_redis(through_proxy), chores)
    status.put(record_of("up-1"))
    stale = direct.get(CACHE_PREFIX + "up-1")
    assert stale is not None and json.loads(stale)["progress"] is None

    proxy.mode = "refuse"
    proxy.reset_all()
    # Neither raises: the state has the write, the rest waits for Redis.
    written = status.advance("up-1", progress={"stage": "transcode", "percent": 50.0})
    jobs.send("deliver_webhook", {"type": "media.ready", "id": "up-1"})
    assert chores.waiting
    assert written["progress"] == {"stage": "transcode", "percent": 50.0}
    # Read from the state meanwhile, not from the cache it would have to trust.
    found = status.get("up-1")
    assert found is not None and found["progress"] == written["progress"]
    assert direct.get(CACHE_PREFIX + "up-1") == stale  # Redis kept the old body
    assert direct.hlen("dramatiq:webhooks.msgs") == 0

    proxy.mode = "pass"
    wait_until(lambda: not chores.waiting, "the chores are done", 30)
    assert direct.get(CACHE_PREFIX + "up-1") is None  # dropped: refilled from the state
    (message,) = direct.hvals("dramatiq:webhooks.msgs")
    assert json.loads(message)["args"] == [{"type": "media.ready", "id": "up-1"}]
    refilled = status.get("up-1")
    assert refilled is not None and refilled["progress"] == written["progress"]
    assert json.loads(direct.get(CACHE_PREFIX + "up-1") or b"{}")["progress"] is not None
    through_proxy.close()


def test_a_status_store_without_deferral_still_fails_on_redis(
    settings: Settings, proxy: FaultProxy
) -> None:
    """The server's and the sweep's stores report Redis errors as before."""
    through_proxy = redis.Redis.from_url(f"redis://{proxy.address}/{DB}")
    status = StatusStore(settings.status_dir, through_proxy)
    proxy.mode = "refuse"
    with pytest.raises(redis.exceptions.ConnectionError):
        status.put(record_of("up-2"))
    through_proxy.close()


def test_a_pipeline_lock_lost_with_redis_is_put_back(direct: redis.Redis) -> None:
    lock = JobLock(direct, "up-3", ttl=0.6)
    assert lock.acquire()
    try:
        direct.delete(KEY_PREFIX + "up-3")  # as a restart without persistence does
        wait_until(lambda: direct.get(KEY_PREFIX + "up-3") == lock.token.encode(), "put back")
        assert lock.held
        assert not JobLock(direct, "up-3").acquire()
        # Taken by another run meanwhile: that one keeps it.
        direct.set(KEY_PREFIX + "up-3", "another-run")
        wait_until(lambda: not lock.held, "the lock is known lost")
        assert direct.get(KEY_PREFIX + "up-3") == b"another-run"
    finally:
        lock.release()


def test_one_caller_marks_each_redis_life(direct: redis.Redis) -> None:
    assert marks_new_redis(direct)
    assert not marks_new_redis(direct)
    direct.delete(EPOCH_KEY)  # restarted empty, or flushed
    assert marks_new_redis(direct)


@pytest.mark.anyio
async def test_jobs_lost_with_redis_are_resent_unless_a_live_job_holds_them(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    token = make_token()
    status = StatusStore(settings.status_dir, redis_client)
    lost = await finished_upload(client, token, b"lost while processing")
    status.update(lost, state="processing")
    waiting = await finished_upload(client, token, b"never picked up")  # `uploaded`
    running = await finished_upload(client, token, b"still running")
    status.update(running, state="processing")
    redis_client.set(KEY_PREFIX + running, "a live job", px=60_000)
    ready = await finished_upload(client, token, b"done before")
    status.update(ready, state="ready")
    queue = MemoryJobQueue()
    try:
        resent = await anyio.to_thread.run_sync(resend_lost_jobs, settings, queue, redis_client)
    finally:
        redis_client.delete(KEY_PREFIX + running)
    assert sorted(resent) == sorted([lost, waiting])
    assert sorted(queue.sent) == sorted(
        [("process_upload", (lost,)), ("process_upload", (waiting,))]
    )
    after = status.get(lost)
    assert after is not None and after["state"] == "processing"  # the job takes it from here
