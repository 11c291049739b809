"""When the sweep runs: once per UPLOAD_SWEEP_INTERVAL, however many workers there are.

The sweep itself (`processors.sweeper`) expires abandoned uploads and re-sends
lost processing jobs; this module only schedules it, with Dramatiq's own parts:

- Every worker process, once booted (`SweepScheduler`), offers a `sweep_expired`
  message now and then. A `BucketRateLimiter` of one per interval, in Redis,
  lets exactly one offer through per interval across all processes and
  machines; the others are no-ops. Intervals are aligned to the clock, so a
  worker that boots sweeps at once unless this interval's sweep was sent.
- The actor holds a `ConcurrentRateLimiter` of one (Dramatiq's distributed
  mutex): a sweep never starts while another runs.

Why not a cron line (`upload-service sweep` is there for one-off runs): every
deployment would need a scheduler of its own on exactly one machine, and a
deployment without one would silently never sweep. Dramatiq has no periodic
messages of its own (its documentation points to an external scheduler that
sends them); the workers are that scheduler here, and the rate limiters make
N of them behave as one. Unlike a chain of self-re-enqueueing messages, there
is nothing to lose: a missed or failed offer is made again a minute later.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.rate_limits import BucketRateLimiter, ConcurrentRateLimiter
from dramatiq.rate_limits.backends import RedisBackend
from redis import Redis

from upload_service.core.jobs import MAINTENANCE_QUEUE, DramatiqJobQueue
from upload_service.core.logs import log_event
from upload_service.core.settings import Settings

from .periodic import PeriodicTask
from .sweeper import resend_stuck_uploads, retire_ended_uploads, sweep_expired_uploads

log = logging.getLogger("processors.sweep_schedule")

ACTOR_NAME = "sweep_expired"
# Redis keys (under these prefixes) of the two rate limiters.
OFFERED_KEY = "upload-sweeper:offered"
RUNNING_KEY = "upload-sweeper:running"
RESEND_KEY = "upload-sweeper:resend"
# How often each worker process offers a sweep: the most a lost offer delays one.
OFFER_EVERY = 60.0


# The Redis client of the rate limiters when the broker is not Redis (RabbitMQ):
# the process's own, set by processors.actors.
_limiter_client: Redis | None = None


def use_redis(client: Redis) -> None:
    global _limiter_client
    _limiter_client = client


def _limiter_redis(broker: dramatiq.Broker) -> Redis:
    if isinstance(broker, RedisBroker):
        return broker.client
    if _limiter_client is None:
        raise TypeError("the sweep is scheduled through Redis: give it a client (use_redis)")
    return _limiter_client


def _interval_ms(interval: float) -> int:
    return max(1000, int(interval * 1000))


def offer_sweep(broker: dramatiq.Broker, interval: float) -> bool:
    """Enqueue a sweep unless one was enqueued this interval; True when this call did."""
    once_per_interval = BucketRateLimiter(
        RedisBackend(client=_limiter_redis(broker)),
        OFFERED_KEY,
        limit=1,
        bucket=_interval_ms(interval),
    )
    with once_per_interval.acquire(raise_on_failure=False) as first:
        if first:
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=MAINTENANCE_QUEUE, actor_name=ACTOR_NAME, args=(), kwargs={}, options={}
            )
            broker.enqueue(message)
    return bool(first)


def sweep_lock(broker: dramatiq.Broker, interval: float) -> ConcurrentRateLimiter:
    """The mutex every sweep holds. It has no renewal, so it lapses after one
    interval (far longer than a sweep takes): a killed sweep blocks one at most."""
    return ConcurrentRateLimiter(
        RedisBackend(client=_limiter_redis(broker)),
        RUNNING_KEY,
        limit=1,
        ttl=_interval_ms(interval),
    )


def run_sweep(settings: Settings, broker: dramatiq.Broker) -> list[str] | None:
    """Re-send lost jobs, expire abandoned uploads and retire the records of ended
    ones (UPLOAD_RETENTION), unless a sweep runs already.

    Returns the expired upload ids, or None when another sweep held the lock.
    """
    with sweep_lock(broker, settings.sweep_interval).acquire(raise_on_failure=False) as alone:
        if not alone:
            log_event(log, "sweeper.skipped", reason="another sweep is running")
            return None
        try:
            resend_stuck_uploads(settings, DramatiqJobQueue(broker))
        except Exception:  # its own failure must not stop the expiry sweep
            log.exception("sweeper.resend_failed")
        swept = sweep_expired_uploads(settings)
        try:
            retire_ended_uploads(settings)
        except Exception:  # the next sweep retires what this one could not
            log.exception("sweeper.retire_failed")
        return swept


def resend_if_due(settings: Settings, broker: dramatiq.Broker, every: float) -> list[str] | None:
    """Re-send lost processing jobs, once per `every` seconds across all workers.

    Apart from the (hourly) sweep: a hand-off the server could not make, or a job
    lost with Redis, should wait minutes, not an hour. None when not this one's turn.
    """
    once_per_interval = BucketRateLimiter(
        RedisBackend(client=_limiter_redis(broker)), RESEND_KEY, limit=1, bucket=_interval_ms(every)
    )
    with once_per_interval.acquire(raise_on_failure=False) as first:
        if not first:
            return None
        return resend_stuck_uploads(settings, DramatiqJobQueue(broker))


@dramatiq.actor(actor_name=ACTOR_NAME, queue_name=MAINTENANCE_QUEUE, max_retries=0)
def sweep_expired(*former_chain_args: Any) -> None:
    """One sweep. `former_chain_args`: (interval, chain) of messages the earlier
    self-re-enqueueing chain left queued; ignored, each such message is one sweep."""
    swept = run_sweep(Settings.from_env(), sweep_expired.broker)
    if swept is not None:
        log_event(log, "sweeper.done", swept=len(swept))


class SweepScheduler(PeriodicTask):
    """In each worker process, a daemon thread that offers a sweep every OFFER_EVERY s."""

    name = "sweep-scheduler"

    def __init__(
        self,
        interval: float,
        offer_every: float = OFFER_EVERY,
        settings: Settings | None = None,
    ) -> None:
        """`settings`: also re-send lost processing jobs every `offer_every` seconds."""
        super().__init__(min(offer_every, interval))
        self.interval = interval
        self.settings = settings

    def runs_on(self, broker: dramatiq.Broker) -> bool:
        return True  # offers are cheap; the interval decides how often one is taken

    def tick(self, broker: dramatiq.Broker) -> None:
        try:
            if offer_sweep(broker, self.interval):
                log_event(log, "sweeper.scheduled", interval=self.interval)
        except Exception:  # Redis away: the next offer tries again; the resend still may
            log.exception("sweeper.offer_failed")
        if self.settings is not None:
            resend_if_due(self.settings, broker, self.every)
