"""The sweeper: expired unfinished uploads lose their bytes, answer 410 and say so.

Uploads are made through the ASGI app, aged by moving their last change into the
past, then swept by the real function (LocalStore, Redis status cache, Redis broker).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import httpx
import pytest
import redis
from conftest import API_KEY, settings_env
from dramatiq.brokers.redis import RedisBroker
from dramatiq_helpers import DramatiqClock, queued
from pipeline_helpers import WorkerProcess
from tus_helpers import age_upload, create, finished_upload, head, patch

from processors import broker as worker_broker
from processors.sweep_schedule import offer_sweep, run_sweep, sweep_expired, sweep_lock
from processors.sweeper import resend_stuck_uploads, sweep_expired_uploads
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, iso

pytestmark = [pytest.mark.anyio, pytest.mark.one_path]


async def status_of(client: httpx.AsyncClient, upload_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_sweeps_only_expired_unfinished_uploads(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    stale = await create(client, token, 100)
    assert (await patch(client, token, stale, 0, b"s" * 40)).status_code == 204
    fresh = await create(client, token, 100)
    assert (await patch(client, token, fresh, 0, b"f" * 40)).status_code == 204
    done = await finished_upload(client, token, b"finished bytes")
    done_partial = await finished_upload(client, token, b"part", **{"Upload-Concat": "partial"})
    deferred = await create(client, token, None, **{"Upload-Defer-Length": "1"})
    for upload_id in (stale, done, done_partial, deferred):
        age_upload(settings, upload_id, settings.expiry + 10)

    swept = await anyio.to_thread.run_sync(sweep_expired_uploads, settings)

    assert sorted(swept) == sorted([stale, deferred])
    # The bytes are gone, the info stays: the id answers 410, not 404.
    assert not (settings.uploads_dir / stale).exists()
    assert (settings.uploads_dir / f"{stale}.info").exists()
    assert (await head(client, token, stale)).status_code == 410
    assert (await patch(client, token, stale, 40, b"late")).status_code == 410
    assert (await status_of(client, stale))["state"] == "expired"
    assert (await status_of(client, deferred))["state"] == "expired"
    # Everything else is untouched.
    assert (await head(client, token, fresh)).headers["upload-offset"] == "40"
    assert (await status_of(client, fresh))["state"] == "uploading"
    r = await client.get(f"/files/{done}", headers={"Authorization": f"Bearer {token}"})
    assert r.content == b"finished bytes"
    assert (await head(client, token, done_partial)).status_code == 200
    # A second pass finds nothing new.
    assert await anyio.to_thread.run_sync(sweep_expired_uploads, settings) == []


async def test_sweep_announces_upload_expired_by_webhook(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    token = make_token()
    stale = await create(client, token, 10, **{"Upload-Metadata": "filename YS5tcDQ="})
    age_upload(settings, stale, settings.expiry + 1)
    with_hooks = settings.with_changes(webhook_url="http://127.0.0.1:9/hooks")

    assert await anyio.to_thread.run_sync(sweep_expired_uploads, with_hooks) == [stale]

    events = [
        m["args"][0]
        for m in queued(redis_client, "webhooks")
        if m["actor_name"] == "deliver_webhook" and m["args"][0]["data"]["id"] == stale
    ]
    assert [e["type"] for e in events] == ["upload.expired"]
    assert events[0]["data"]["state"] == "expired"
    assert events[0]["data"]["metadata"] == {"filename": "a.mp4"}
    # Leave nothing behind for a worker that a later test starts on this Redis.
    for message in queued(redis_client, "webhooks"):
        if message["args"][0]["data"]["id"] == stale:
            key = message["options"]["redis_message_id"]
            redis_client.hdel("dramatiq:webhooks.msgs", key)
            redis_client.lrem("dramatiq:webhooks", 0, key)


async def test_no_webhook_without_webhook_url(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    token = make_token()
    stale = await create(client, token, 10)
    age_upload(settings, stale, settings.expiry + 1)
    assert await anyio.to_thread.run_sync(sweep_expired_uploads, settings) == [stale]
    assert not [m for m in queued(redis_client, "webhooks") if m["args"][0]["data"]["id"] == stale]


async def test_an_upload_being_written_is_not_swept(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    stale = await create(client, token, 10)
    age_upload(settings, stale, settings.expiry + 1)
    locker = client.app.state.services.locker  # type: ignore[attr-defined]
    async with locker.lock(stale):  # a PATCH in progress holds this lock
        assert await anyio.to_thread.run_sync(sweep_expired_uploads, settings) == []
    assert await anyio.to_thread.run_sync(sweep_expired_uploads, settings) == [stale]


async def test_cli_sweep_command(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    token = make_token()
    stale = await create(client, token, 10)
    age_upload(settings, stale, settings.expiry + 1)
    result = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "upload_service.cli", "sweep"],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert result.returncode == 0, result.stderr
    assert "swept 1 expired upload(s)" in result.stdout
    assert (await head(client, token, stale)).status_code == 410


# -- the periodic sweep -----------------------------------------------------------

MAINTENANCE_KEYS = (
    "dramatiq:maintenance",
    "dramatiq:maintenance.msgs",
    "dramatiq:maintenance.DQ",
    "dramatiq:maintenance.DQ.msgs",
)


def clear_maintenance(client: redis.Redis) -> None:
    client.delete(*MAINTENANCE_KEYS, *client.scan_iter("upload-sweeper:*"))


@pytest.fixture
def maintenance_queue(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """No sweep queued or offered, and none again after: a later worker must not run these."""
    clear_maintenance(redis_client)
    yield redis_client
    clear_maintenance(redis_client)


@pytest.fixture
def worker_brokers(settings: Settings) -> Iterator[list[RedisBroker]]:
    """The brokers of three worker processes, each on its own Redis client."""
    brokers = [
        worker_broker.make_broker(settings, worker_broker.redis_client(settings)) for _ in range(3)
    ]
    yield brokers
    for broker in brokers:
        broker.client.close()


def sweeps_queued(client: redis.Redis) -> int:
    return len([m for m in queued(client, "maintenance") if m["actor_name"] == "sweep_expired"])


def test_actor_is_declared_on_the_maintenance_queue() -> None:
    assert sweep_expired.actor_name == "sweep_expired"
    assert sweep_expired.queue_name == "maintenance"


def test_worker_processes_together_queue_one_sweep_per_interval(
    settings: Settings,
    maintenance_queue: redis.Redis,
    worker_brokers: list[RedisBroker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = DramatiqClock(monkeypatch)
    clock.advance_to((clock.now_ms // 900_000 + 1) * 900_000)  # the start of an interval

    # Every process offers a sweep when it boots, and again a minute later.
    offers = [offer_sweep(broker, 900) for broker in worker_brokers]
    clock.advance(60)
    offers += [offer_sweep(broker, 900) for broker in worker_brokers]
    assert offers.count(True) == 1
    assert sweeps_queued(maintenance_queue) == 1

    clock.advance(900)  # the next interval: one more
    assert [offer_sweep(broker, 900) for broker in worker_brokers].count(True) == 1
    assert sweeps_queued(maintenance_queue) == 2


async def test_no_sweep_starts_while_another_runs(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    maintenance_queue: redis.Redis,
    worker_brokers: list[RedisBroker],
) -> None:
    token = make_token()
    stale = await create(client, token, 10)
    age_upload(settings, stale, settings.expiry + 1)
    first, second = worker_brokers[:2]

    with sweep_lock(first, settings.sweep_interval).acquire():  # a sweep in progress
        assert await anyio.to_thread.run_sync(run_sweep, settings, second) is None
        assert (await status_of(client, stale))["state"] == "uploading"

    assert await anyio.to_thread.run_sync(run_sweep, settings, second) == [stale]
    assert (await status_of(client, stale))["state"] == "expired"


@pytest.mark.e2e
async def test_a_booting_worker_sweeps(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    maintenance_queue: redis.Redis,
) -> None:
    """`upload-service worker` schedules the sweep: the first one runs at boot."""
    token = make_token()
    stale = await create(client, token, 10)
    age_upload(settings, stale, settings.expiry + 1)
    worker = WorkerProcess(settings, {"UPLOAD_SWEEP_INTERVAL": "3600"}, name="sweep-worker")
    worker.start()
    try:
        for _ in range(600):
            if (await status_of(client, stale))["state"] == "expired":
                break
            await anyio.sleep(0.05)
        assert (await status_of(client, stale))["state"] == "expired", worker.log()
        assert not (settings.uploads_dir / stale).exists()
    finally:
        await anyio.to_thread.run_sync(worker.stop)


# -- re-sending lost pipeline jobs --------------------------------------------------


def set_status(settings: Settings, upload_id: str, age: float = 0, **changes: Any) -> None:
    """Rewrite a status record as a failure would have left it: `updated_at` `age` s ago."""
    path = settings.status_dir / f"{upload_id}.json"
    record = json.loads(path.read_text())
    record.update(changes, updated_at=iso(time.time() - age))
    path.write_text(json.dumps(record))
    StatusStore(settings.status_dir, redis.Redis.from_url(settings.redis_url)).forget_cache(
        upload_id
    )


def media_jobs(redis_client: redis.Redis, upload_id: str) -> list[dict[str, Any]]:
    return [
        m
        for m in queued(redis_client, "media")
        if m["actor_name"] == "process_upload" and m["args"] == [upload_id]
    ]


async def test_resends_lost_jobs_of_stale_uploaded_and_unnoticed_finished_uploads(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
) -> None:
    token = make_token()
    resend_after = settings.pipeline_resend_after
    # Marked `uploaded`, then Redis failed before the job was sent: long ago.
    stale = await finished_upload(client, token, b"stale upload")
    set_status(settings, stale, age=resend_after + 60)
    # The last byte landed, then the status update itself failed: still `uploading`.
    unnoticed = await finished_upload(client, token, b"unnoticed upload")
    set_status(settings, unnoticed, age=resend_after + 60, state="uploading")
    # Just finished: its job is most likely on its way.
    fresh = await finished_upload(client, token, b"fresh upload")
    set_status(settings, fresh, age=resend_after - 60)
    # Not to be processed: unfinished, a partial, settled.
    unfinished = await create(client, token, 100)
    assert (await patch(client, token, unfinished, 0, b"u" * 40)).status_code == 204
    set_status(settings, unfinished, age=resend_after + 60)
    partial = await finished_upload(client, token, b"part", **{"Upload-Concat": "partial"})
    set_status(settings, partial, age=resend_after + 60)
    ready = await finished_upload(client, token, b"ready upload")
    set_status(settings, ready, age=resend_after + 60, state="ready")
    queue = MemoryJobQueue()

    resent = await anyio.to_thread.run_sync(resend_stuck_uploads, settings, queue)

    assert sorted(resent) == sorted([stale, unnoticed])
    assert sorted(queue.sent) == sorted(
        [("process_upload", (stale,)), ("process_upload", (unnoticed,))]
    )
    assert (await status_of(client, unnoticed))["state"] == "uploaded"
    assert (await status_of(client, stale))["state"] == "uploaded"
    assert (await status_of(client, unfinished))["state"] == "uploading"
    assert (await status_of(client, ready))["state"] == "ready"
    # The re-send restarted the clock: the next sweep leaves the queued jobs be...
    assert await anyio.to_thread.run_sync(resend_stuck_uploads, settings, queue) == []
    # ...until they are stale again.
    later = time.time() + resend_after + 60
    again = await anyio.to_thread.run_sync(lambda: resend_stuck_uploads(settings, queue, now=later))
    assert sorted(again) == sorted([stale, unnoticed, fresh])


def test_pipeline_resend_after_setting(tmp_path: Any) -> None:
    env = {"PIPELINE_RESEND_AFTER": "42"}
    assert Settings.from_env(env, dotenv=tmp_path / ".env").pipeline_resend_after == 42
    assert Settings.from_env({}, dotenv=tmp_path / ".env").pipeline_resend_after == 120


async def test_periodic_sweep_resends_through_the_broker(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    maintenance_queue: redis.Redis,
    worker_brokers: list[RedisBroker],
) -> None:
    redis_client = maintenance_queue
    token = make_token()
    stale = await finished_upload(client, token, b"stale upload")
    set_status(settings, stale, age=settings.pipeline_resend_after + 60)
    try:
        await anyio.to_thread.run_sync(run_sweep, settings, worker_brokers[0])
        [message] = media_jobs(redis_client, stale)
        assert message["queue_name"] == "media"
    finally:
        # Leave nothing behind for a worker that a later test starts on this Redis.
        for message in media_jobs(redis_client, stale):
            key = message["options"]["redis_message_id"]
            redis_client.hdel("dramatiq:media.msgs", key)
            redis_client.lrem("dramatiq:media", 0, key)


@pytest.mark.parametrize("state", ["processing", "playable"])
async def test_resends_the_job_of_an_upload_stuck_in_processing(
    client: httpx.AsyncClient,
    make_token: Callable[..., str],
    settings: Settings,
    state: str,
) -> None:
    """A job lost while in progress (`processing`, or `playable` with its larger rungs
    to come; its message gone with Redis, say): re-sent once its status has not changed
    for PIPELINE_STUCK_AFTER, and left in its state."""
    token = make_token()
    stuck_after = settings.pipeline_stuck_after
    stuck = await finished_upload(client, token, b"stuck upload")
    set_status(settings, stuck, age=stuck_after + 60, state=state)
    working = await finished_upload(client, token, b"working upload")
    set_status(settings, working, age=stuck_after - 60, state=state)
    queue = MemoryJobQueue()

    resent = await anyio.to_thread.run_sync(resend_stuck_uploads, settings, queue)

    assert resent == [stuck]
    assert queue.sent == [("process_upload", (stuck,))]
    assert (await status_of(client, stuck))["state"] == state
    assert await anyio.to_thread.run_sync(resend_stuck_uploads, settings, queue) == []
