"""Jobs lost with Redis, sent again as soon as Redis is back without its queues.

The Redis broker keeps every message in Redis alone. A Redis without
persistence that restarts (or is flushed, or fails over to an empty replica)
comes back with no queued, delayed or unacknowledged message: a job that died
in the outage, or whose retry could not be enqueued, or whose worker was
killed meanwhile, is simply gone, and its upload says `uploaded` or
`processing` in the state (which survives) with nobody working on it.

A job that was running through the outage is not among them: its status
writes reach the state and wait out Redis for the cache (`core.redis_deferred`),
it finishes, and its pipeline lock, lost with Redis, is put back at its next
renewal (`processors.joblock`).

How the workers notice: a marker key (EPOCH_KEY) that the first worker
process to look sets once in each Redis life. Every worker process looks every
WORKER_MAINTENANCE_INTERVAL seconds; the one whose SET NX creates the marker
runs this Redis life's one look for lost jobs. It first waits one pipeline-lock
TTL, the time any live job has to put its lock back, then re-sends
`process_upload` for every finished upload whose status says `uploaded` or
`processing` and whose pipeline lock nobody holds (`sweeper.resend_store`).
A Redis seen for the first time (a deployment's first boot) gets the same
look, which finds nothing, or the jobs of a deployment restarted whole.

Why only then, and not at every pass for any `processing` without a lock: a
job that waits out its retry's backoff holds no lock either, and re-sending
it would retry it early and without end. Once Redis has lost everything,
nothing waits in a queue, so a lock-less upload is certainly lost. Without the
marker, the sweep's PIPELINE_STUCK_AFTER (half an hour) was the only way back.

The RabbitMQ broker needs none of this: its queues are not in Redis.
"""

from __future__ import annotations

import logging
import secrets
import time

import anyio
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis import Redis

from upload_service.core.jobs import DramatiqJobQueue, JobQueue
from upload_service.core.logs import log_event
from upload_service.core.settings import Settings
from upload_service.core.state import shared_state
from upload_service.core.status import StatusStore
from upload_service.core.store import UploadStore
from upload_service.core.store.factory import make_store

from .joblock import KEY_PREFIX
from .periodic import PeriodicTask
from .sweeper import resend_store

log = logging.getLogger("processors.lost_jobs")

EPOCH_KEY = "upload-service:redis-epoch"


def marks_new_redis(redis: Redis) -> bool:
    """True for exactly one caller in each Redis life: the one that marks it."""
    return bool(redis.set(EPOCH_KEY, secrets.token_hex(8), nx=True))


def resend_lost_jobs(
    settings: Settings, jobs: JobQueue, redis: Redis, store: UploadStore | None = None
) -> list[str]:
    """`process_upload` for every upload waiting for a job that no live job holds; their ids."""
    store = store or make_store(settings)
    status = StatusStore(shared_state(settings).status, redis)

    def running(upload_id: str) -> bool:
        return bool(redis.exists(KEY_PREFIX + upload_id))

    async def run() -> list[str]:
        # Waiting at all (resend_after and stuck_after 0): the queues are gone.
        return await resend_store(store, status, jobs, 0, time.time(), 0, running)

    return anyio.run(run)


class LostJobsResend(PeriodicTask):
    """In each worker process, a look every `every` seconds for a Redis that lost its queues."""

    name = "lost-jobs"

    def __init__(self, settings: Settings, interval: float, grace: float) -> None:
        """`grace`: seconds live jobs get to put their locks back (the lock's TTL)."""
        super().__init__(interval)
        self.settings = settings
        self.grace = grace

    def runs_on(self, broker: dramatiq.Broker) -> bool:
        return isinstance(broker, RedisBroker) and self.every > 0

    def tick(self, broker: dramatiq.Broker) -> None:
        assert isinstance(broker, RedisBroker)
        if not marks_new_redis(broker.client):
            return
        log_event(log, "lost_jobs.new_redis", grace=self.grace)
        if self.pause(self.grace):
            return
        try:
            resent = resend_lost_jobs(self.settings, DramatiqJobQueue(broker), broker.client)
        except Exception:
            # Redis went away again: unmark it, so that a later look does this one's work.
            broker.client.delete(EPOCH_KEY)
            raise
        log_event(log, "lost_jobs.resent", count=len(resent), upload_ids=",".join(resent))
