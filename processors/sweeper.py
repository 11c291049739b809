"""The expiration extension's other half: dropping the bytes of abandoned uploads.

The tus layer already answers 410 for an unfinished upload whose last change is
older than UPLOAD_EXPIRY; the sweeper makes that final. For each such upload it
removes the bytes (`store.expire`, which keeps the info so the id still answers
410 instead of 404), marks the status record `expired` and announces
`upload.expired`. Finished uploads are never touched.

It runs as `upload-service sweep` (once) and as the periodic Dramatiq actor
`sweep_expired` on the `maintenance` queue, which re-enqueues itself with a
delay. A worker that boots starts the chain unless a Redis key says one is
already alive, so N worker processes still make one chain.

Each periodic run also reconciles the processing trigger (`resend_stuck_uploads`):
the server marks an upload `uploaded`, then sends `process_upload`; a Redis
failure between the two leaves a status that waits for a job never sent. An
upload still `uploaded` after PIPELINE_RESEND_AFTER seconds, or finished in the
store while its status says `uploading`, gets the message (again). Harmless if
the first one is merely queued: the pipeline's lock and idempotency make the
second a no-op.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import dramatiq
import dramatiq.broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from processors.broker import setup_broker
from upload_service.core.errors import Locked
from upload_service.core.events import emit
from upload_service.core.jobs import MAINTENANCE_QUEUE, DramatiqJobQueue, JobQueue
from upload_service.core.locks import RedisLocker
from upload_service.core.logs import log_event
from upload_service.core.redis_commands import RedisCommands
from upload_service.core.settings import Settings
from upload_service.core.status import Record, StatusStore
from upload_service.core.store import UploadGone, UploadInfo, UploadNotFound, UploadStore
from upload_service.core.store.factory import make_store

log = logging.getLogger("processors.sweeper")

ACTOR_NAME = "sweep_expired"
# Alive while a chain of periodic sweeps exists; refreshed by every run.
CHAIN_KEY = "upload-sweeper:chain"
MAX_DELAY = 6 * 24 * 3600


async def stored_uploads(store: UploadStore) -> AsyncIterator[UploadInfo]:
    """Every upload the store holds now, skipping those that vanish meanwhile."""
    for upload_id in sorted(await store.list_ids()):
        try:
            yield await store.get(upload_id)
        except (UploadNotFound, UploadGone, OSError):
            continue  # already swept, terminated meanwhile, or half-created


async def sweep_store(
    store: UploadStore,
    status: StatusStore,
    jobs: JobQueue | None,
    locker: RedisLocker | None,
    expiry: int,
    now: float,
) -> list[str]:
    swept = []
    async for info in stored_uploads(store):
        upload_id = info.id
        if info.finished or info.updated_at + expiry >= now:
            continue
        try:
            if locker is None:
                await store.expire(upload_id)
            else:
                # A PATCH holding the lock is a change in progress: not abandoned.
                async with locker.lock(upload_id):
                    await store.expire(upload_id)
        except Locked:
            continue
        swept.append(upload_id)
        log_event(log, "upload.expired", upload_id=upload_id, owner=info.owner)
        try:
            record = await anyio.to_thread.run_sync(
                functools.partial(status.update, upload_id, state="expired")
            )
        except KeyError:
            continue  # no status record (created before the status store existed)
        if jobs is not None:
            emit(jobs, True, "upload.expired", record)
    return swept


def sweep_expired_uploads(
    settings: Settings, now: float | None = None, store: UploadStore | None = None
) -> list[str]:
    """Expire every unfinished upload idle for longer than `settings.expiry`; their ids.

    `store`: the one UPLOAD_STORE names unless given (tests inject a simulated B2).
    """
    store = store or make_store(settings)
    sync_redis = Redis.from_url(settings.redis_url)
    status = StatusStore(settings.status_dir, sync_redis)
    jobs = DramatiqJobQueue(RedisBroker(client=sync_redis)) if settings.webhook_url else None

    async def run() -> list[str]:
        # The upload locks the server's PATCHes hold, with the stock client: the
        # fast path is the server's.
        redis = AsyncRedis.from_url(settings.redis_url)
        try:
            return await sweep_store(
                store,
                status,
                jobs,
                RedisLocker(RedisCommands(redis), ttl=settings.lock_ttl),
                settings.expiry,
                time.time() if now is None else now,
            )
        finally:
            await redis.aclose()

    try:
        return anyio.run(run)
    finally:
        sync_redis.close()


# -- reconciling the processing trigger ---------------------------------------------


def _timestamp(iso_time: str) -> float:
    return datetime.strptime(iso_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _needs_resend(info: UploadInfo, record: Record, resend_after: float, now: float) -> bool:
    if record["state"] == "uploading":
        return True  # finished bytes, but the status never heard of it
    if record["state"] != "uploaded" or info.concat == "partial":
        return False
    try:
        return _timestamp(record["updated_at"]) + resend_after < now
    except (KeyError, ValueError):
        return True  # an unreadable time: better one redundant job than none


async def resend_store(
    store: UploadStore, status: StatusStore, jobs: JobQueue, resend_after: float, now: float
) -> list[str]:
    resent = []
    async for info in stored_uploads(store):
        upload_id = info.id
        if not info.finished:
            continue
        record = await anyio.to_thread.run_sync(status.get, upload_id)
        if record is None or not _needs_resend(info, record, resend_after, now):
            continue
        # Status first, as the server does: a failed send is found again next time.
        # Rewriting it also restarts the clock, so a job that is merely queued behind
        # a backlog is not re-sent on every sweep.
        update = functools.partial(
            status.update, upload_id, state="uploaded", offset=info.offset, length=info.length
        )
        try:
            await anyio.to_thread.run_sync(update)
        except KeyError:
            continue
        if info.concat == "partial":
            continue  # a piece of a final upload, never processed on its own
        jobs.send("process_upload", upload_id)
        resent.append(upload_id)
        log_event(log, "sweeper.resent", upload_id=upload_id, was=record["state"])
    return resent


def resend_stuck_uploads(
    settings: Settings,
    jobs: JobQueue,
    now: float | None = None,
    store: UploadStore | None = None,
) -> list[str]:
    """Send `process_upload` for finished uploads whose job was (maybe) never sent; their ids."""
    store = store or make_store(settings)
    sync_redis = Redis.from_url(settings.redis_url)
    status = StatusStore(settings.status_dir, sync_redis)
    try:
        return anyio.run(
            resend_store,
            store,
            status,
            jobs,
            settings.pipeline_resend_after,
            time.time() if now is None else now,
        )
    finally:
        sync_redis.close()


# -- the periodic actor -----------------------------------------------------------


def schedule_sweep(broker: dramatiq.Broker, interval: float, chain: str, delay: float) -> None:
    """Enqueue one `sweep_expired` run of `chain`, `delay` seconds from now."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=MAINTENANCE_QUEUE,
        actor_name=ACTOR_NAME,
        args=(interval, chain),
        kwargs={},
        options={},
    )
    # Redis brokers refuse delays of 7 days or more.
    delay_ms = int(min(delay, MAX_DELAY) * 1000)
    broker.enqueue(message, delay=delay_ms or None)


def _chain_ttl(interval: float) -> int:
    # Two intervals of slack: a run delayed by a busy queue must not look dead.
    return max(60, int(min(interval, MAX_DELAY) * 2))


def run_periodic_sweep(
    settings: Settings, broker: dramatiq.Broker, interval: float, chain: str | None = None
) -> list[str]:
    """One link of a chain: sweep now, then enqueue the next link.

    The Redis key names the live chain. A run of another chain (two workers that
    booted while the key had lapsed) ends there, so duplicates die out; a run
    without a chain (a one-off `sweep_expired` message) starts one if none lives.
    """
    try:
        try:
            resend_stuck_uploads(settings, DramatiqJobQueue(broker))
        except Exception:  # its own failure must not stop the expiry sweep
            log.exception("sweeper.resend_failed")
        return sweep_expired_uploads(settings)
    finally:
        # Even after a failed sweep: the chain must outlive one bad run.
        if not isinstance(broker, RedisBroker):
            schedule_sweep(broker, interval, chain or "local", interval)
        else:
            live = broker.client.get(CHAIN_KEY)
            live_chain = live.decode() if isinstance(live, bytes) else live
            if live_chain is None or live_chain == chain:
                chain = chain or secrets.token_hex(8)
                broker.client.set(CHAIN_KEY, chain, ex=_chain_ttl(interval))
                schedule_sweep(broker, interval, chain, interval)
            else:
                log_event(log, "sweeper.chain_ended", chain=chain, live_chain=live_chain)


def ensure_sweep_chain(broker: dramatiq.Broker, interval: float) -> bool:
    """Start a chain of sweeps unless one is alive; True when this call started it."""
    if not isinstance(broker, RedisBroker):
        return False  # stub brokers in tests: nothing runs periodically there
    chain = secrets.token_hex(8)
    if not broker.client.set(CHAIN_KEY, chain, ex=_chain_ttl(interval), nx=True):
        return False
    schedule_sweep(broker, interval, chain, 0)
    return True


class SweepChainStarter(Middleware):
    """Starts the periodic sweep when a worker process boots (once per chain)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            if ensure_sweep_chain(broker, self.interval):
                log_event(log, "sweeper.chain_started", interval=self.interval)
        except Exception:  # Redis down at boot: the next boot retries
            log.exception("sweeper.chain_start_failed")


if dramatiq.broker.global_broker is None:  # imported alone (`upload-service sweep`)
    setup_broker()


@dramatiq.actor(actor_name=ACTOR_NAME, queue_name=MAINTENANCE_QUEUE, max_retries=0)
def sweep_expired(interval: float | None = None, chain: str | None = None) -> None:
    settings = Settings.from_env()
    swept = run_periodic_sweep(
        settings, sweep_expired.broker, interval or settings.sweep_interval, chain
    )
    log_event(log, "sweeper.done", swept=len(swept))


sweep_expired.broker.add_middleware(SweepChainStarter(Settings.from_env().sweep_interval))
