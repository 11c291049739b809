"""The expiration extension's other half: dropping the bytes of abandoned uploads.

The tus layer already answers 410 for an unfinished upload whose last change is
older than UPLOAD_EXPIRY; the sweeper makes that final. For each such upload it
removes the bytes (`store.expire`, which keeps the info so the id still answers
410 instead of 404), marks the status record `expired` and announces
`upload.expired`. Finished uploads are never touched.

It runs as `upload-service sweep` (once) and as the Dramatiq actor
`sweep_expired`, once per UPLOAD_SWEEP_INTERVAL (`processors.sweep_schedule`).

Retention (`retire_ended_uploads`): an upload that ended (`terminated`, or
`expired`) keeps its records for UPLOAD_RETENTION seconds, so that the backend
and its webhooks can still read what happened; then its status record, what
the store kept of it (an expired upload's info, for 410s) and its delivery log
are removed, and the id is unknown (404) from then on.

Each run also reconciles the processing trigger (`resend_stuck_uploads`):
the server marks an upload `uploaded`, then sends `process_upload`; a Redis
failure between the two leaves a status that waits for a job never sent. An
upload still `uploaded` after PIPELINE_RESEND_AFTER seconds, still `processing`
with no change for PIPELINE_STUCK_AFTER seconds, or finished in the store while
its status says `uploading`, gets the message (again). Harmless if
the first one is merely queued: the pipeline's lock and idempotency make the
second a no-op.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import anyio
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from upload_service.core.errors import Locked
from upload_service.core.events import emit
from upload_service.core.jobs import DramatiqJobQueue, JobQueue
from upload_service.core.locks import RedisLocker
from upload_service.core.logs import log_event
from upload_service.core.presence import Presence
from upload_service.core.quotas import RedisUnfinishedUploads
from upload_service.core.redis_commands import RedisCommands
from upload_service.core.settings import Settings
from upload_service.core.state import shared_state
from upload_service.core.state.base import DeliveryLog
from upload_service.core.status import ENDED, Record, StatusStore
from upload_service.core.store import UploadGone, UploadInfo, UploadNotFound, UploadStore
from upload_service.core.store.factory import make_store

log = logging.getLogger("processors.sweeper")

# A job works on these: `playable` has its larger rungs and captions still to come.
IN_PROGRESS = ("processing", "playable")


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
        if status.redis is not None:  # no longer one of its owner's unfinished uploads
            RedisUnfinishedUploads(status.redis).remove(info.owner, upload_id)
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
    status = StatusStore(shared_state(settings).status, sync_redis)
    jobs = DramatiqJobQueue.on_redis(sync_redis) if settings.webhook_url else None

    async def run() -> list[str]:
        # The upload locks the server's PATCHes hold, with the stock client: the
        # fast path is the server's.
        redis = AsyncRedis.from_url(settings.redis_url)
        presence = Presence(settings.redis_url)
        locker = RedisLocker(RedisCommands(redis), ttl=settings.lock_ttl, presence=presence)
        try:
            return await sweep_store(
                store, status, jobs, locker, settings.expiry, time.time() if now is None else now
            )
        finally:
            await presence.aclose()
            await redis.aclose()

    try:
        return anyio.run(run)
    finally:
        sync_redis.close()


# -- retention of ended uploads' records ---------------------------------------------


RETIRE_BATCH = 500


async def retire_store(
    store: UploadStore, status: StatusStore, webhooks: DeliveryLog, retention: int, now: float
) -> list[str]:
    retired: list[str] = []
    while True:
        # Oldest first, in batches: each pass removes what it lists, so the next
        # pass lists the next ones.
        batch = await anyio.to_thread.run_sync(
            status.records.list_expired, ENDED, now - retention, RETIRE_BATCH
        )
        for upload_id in batch:
            record = await anyio.to_thread.run_sync(status.get, upload_id)
            # The store's leftovers first: a record without them is harmless, not the reverse.
            with contextlib.suppress(UploadNotFound, UploadGone, OSError):
                await store.terminate(upload_id)
            await anyio.to_thread.run_sync(webhooks.delete, upload_id)
            await anyio.to_thread.run_sync(status.remove, upload_id)
            if status.redis is not None and record is not None:
                RedisUnfinishedUploads(status.redis).remove(str(record.get("owner")), upload_id)
            retired.append(upload_id)
            log_event(log, "upload.retired", upload_id=upload_id, state=(record or {}).get("state"))
        if len(batch) < RETIRE_BATCH:
            return retired


def retire_ended_uploads(
    settings: Settings, now: float | None = None, store: UploadStore | None = None
) -> list[str]:
    """Remove the records of uploads that ended over UPLOAD_RETENTION seconds ago;
    their ids. UPLOAD_RETENTION=0 keeps them for ever."""
    if not settings.retention:
        return []
    store = store or make_store(settings)
    state = shared_state(settings)
    sync_redis = Redis.from_url(settings.redis_url)
    try:
        return anyio.run(
            retire_store,
            store,
            StatusStore(state.status, sync_redis),
            state.webhooks,
            settings.retention,
            time.time() if now is None else now,
        )
    finally:
        sync_redis.close()


# -- reconciling the processing trigger ---------------------------------------------


def _timestamp(iso_time: str) -> float:
    return datetime.strptime(iso_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _needs_resend(
    info: UploadInfo, record: Record, resend_after: float, stuck_after: float, now: float
) -> bool:
    state = record["state"]
    if state == "uploading":
        return True  # finished bytes, but the status never heard of it
    if info.concat == "partial" or state not in ("uploaded", *IN_PROGRESS):
        return False
    # In progress, unchanged for long: its worker lost the message (a Redis outage
    # under ack/retry, a broker restart that forgot it) or died unnoticed.
    limit = resend_after if state == "uploaded" else stuck_after
    try:
        return _timestamp(record["updated_at"]) + limit < now
    except (KeyError, ValueError):
        return True  # an unreadable time: better one redundant job than none


async def resend_store(
    store: UploadStore,
    status: StatusStore,
    jobs: JobQueue,
    resend_after: float,
    now: float,
    stuck_after: float | None = None,
    running: Callable[[str], bool] | None = None,
) -> list[str]:
    """`running`: says whether a live job holds an upload (left alone if so)."""
    resent = []
    stuck = resend_after if stuck_after is None else stuck_after
    async for info in stored_uploads(store):
        upload_id = info.id
        if not info.finished:
            continue
        record = await anyio.to_thread.run_sync(status.get, upload_id)
        if record is None or not _needs_resend(info, record, resend_after, stuck, now):
            continue
        if running is not None and await anyio.to_thread.run_sync(running, upload_id):
            continue
        # Status first, as the server does: a failed send is found again next time.
        # Rewriting it also restarts the clock, so a job that is merely queued behind
        # a backlog is not re-sent on every sweep. One in progress keeps its state
        # (the pipeline takes it up from its checkpoint).
        changes: dict[str, object] = {"offset": info.offset, "length": info.length}
        if record["state"] not in IN_PROGRESS:
            changes["state"] = "uploaded"
        update = functools.partial(status.update, upload_id, **changes)
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
    status = StatusStore(shared_state(settings).status, sync_redis)
    try:
        return anyio.run(
            resend_store,
            store,
            status,
            jobs,
            settings.pipeline_resend_after,
            time.time() if now is None else now,
            settings.pipeline_stuck_after,
        )
    finally:
        sync_redis.close()
