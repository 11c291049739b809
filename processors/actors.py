"""The module `upload-service worker` loads: the broker first, then every actor.

    process_upload(upload_id)           queue "media"        the pipeline
    process_upload_exhausted(msg, info) queue "media"        retries ran out
    withdraw_upload(upload_id)          queue "media"        after a DELETE: processors.withdraw
    deliver_webhook(event, ...)         queue "webhooks"     processors.webhooks
    sweep_expired()                     queue "maintenance"  processors.sweep_schedule

The server never imports this: it sends plain messages by actor name
(`upload_service.core.jobs`), so the names and queues here must match ACTOR_QUEUES.

Importing it does no I/O; each worker process builds the store and the
publisher, and removes stale work dirs, when it boots (`processors.boot`).
"""

from __future__ import annotations

import functools
from typing import Any

import dramatiq

from upload_service.core.jobs import ACTOR_QUEUES, PIPELINE_QUEUE, DramatiqJobQueue
from upload_service.core.redis_deferred import DeferredChores, DeferringJobQueue
from upload_service.core.settings import Settings
from upload_service.core.state import shared_state
from upload_service.core.status import StatusStore
from upload_service.core.store.factory import make_store

from .boot import WorkerBoot
from .broker import redis_client, setup_broker

# What Dramatiq needs before the actors are declared: the settings (the actors'
# retry options come from them) and the broker. Neither does I/O: redis-py
# connects on the first command. The rest waits for the process to boot.
settings = Settings.from_env()
redis = redis_client(settings)  # the process's one client: broker, status, locks, sweeps
broker = setup_broker(settings, redis)

# Imported only now, so that everything declaring actors binds to this broker.
from . import pipeline, sweep_schedule, webhooks  # noqa: E402
from .failures import MediaError  # noqa: E402
from .joblock import lock_ttl  # noqa: E402
from .lost_jobs import LostJobsResend  # noqa: E402
from .publish import make_publisher  # noqa: E402
from .redelivery import DeadWorkerRequeue  # noqa: E402
from .withdraw import withdraw  # noqa: E402

# The actor's own limit is only a backstop; the real one scales with the media
# (ffmpeg's time-out, `pipeline.transcode_timeout`), which is not known until probed.
BACKSTOP_TIME_LIMIT_MS = 12 * 3600 * 1000


@functools.cache
def context() -> pipeline.PipelineContext:
    """What the actors share, built once per process: at boot (`processors.boot`)."""
    # A Redis outage mid-job delays the cache's refresh and the job's events; the
    # job itself goes on (core.redis_deferred).
    chores = DeferredChores()
    return pipeline.PipelineContext(
        settings=settings,
        # STATE_URL: files on this machine, or PostgreSQL shared by every machine.
        status=StatusStore(shared_state(settings).status, redis, deferred=chores),
        jobs=DeferringJobQueue(DramatiqJobQueue(broker), chores),
        publisher=make_publisher(settings),
        # UPLOAD_STORE, as the server has it.
        store=make_store(settings),
    )


@dramatiq.actor(
    actor_name="process_upload",
    queue_name=PIPELINE_QUEUE,
    max_retries=settings.process_max_retries,
    min_backoff=int(settings.process_min_backoff * 1000),
    max_backoff=3600 * 1000,
    time_limit=BACKSTOP_TIME_LIMIT_MS,
    throws=(MediaError,),
    on_retry_exhausted="process_upload_exhausted",
)
def process_upload(upload_id: str) -> None:
    pipeline.process_upload(upload_id, context())


@dramatiq.actor(actor_name="process_upload_exhausted", queue_name=PIPELINE_QUEUE, max_retries=20)
def process_upload_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    upload_id = message["args"][0]
    trace = message.get("options", {}).get("traceback") or ""
    reason = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
    pipeline.mark_exhausted(context(), upload_id, reason)


@dramatiq.actor(
    actor_name="withdraw_upload",
    queue_name=PIPELINE_QUEUE,
    # Retried while the upload's job still runs (it stops within seconds).
    max_retries=30,
    min_backoff=1000,
    max_backoff=30_000,
)
def withdraw_upload(upload_id: str) -> None:
    withdraw(upload_id, context())


# Scratch dirs older than twice any job's limit are leftovers of killed jobs never redone.
STALE_WORK_DIR_AGE = 2 * BACKSTOP_TIME_LIMIT_MS / 1000
broker.add_middleware(WorkerBoot(settings, context, STALE_WORK_DIR_AGE, ACTOR_QUEUES))
sweep_schedule.use_redis(redis)  # its rate limiters live in Redis, whatever the broker
broker.add_middleware(
    sweep_schedule.SweepScheduler(
        settings.sweep_interval, settings.pipeline_resend_interval, settings=settings
    )
)
# A killed worker's messages back within a heartbeat timeout and an interval.
broker.add_middleware(DeadWorkerRequeue(settings.worker_maintenance_interval))
# Jobs lost with a Redis that restarted empty, sent again within a lock TTL and an interval.
broker.add_middleware(
    LostJobsResend(
        settings,
        settings.worker_maintenance_interval,
        grace=lock_ttl(settings.worker_heartbeat_timeout),
    )
)
# Declared by their modules on import; named here so no linter calls the import unused.
DECLARED_ELSEWHERE = (webhooks.deliver_webhook, sweep_schedule.sweep_expired)
