"""A worker process's Redis client and its Dramatiq broker.

One sync redis-py client per process, made here and passed to everything in the
process that talks to Redis: the broker (`RedisBroker(client=...)`), the status
store, the sweeps' locks. One connection pool per process, one retry policy.
redis-py connects on the first command, so making them does no I/O: the broker
can be set at import time, before any actor is declared, as Dramatiq requires.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from upload_service.core.jobs import uses_rabbitmq
from upload_service.core.rabbitmq import rabbitmq_broker
from upload_service.core.settings import Settings

# Five retries, 0.2 s doubling to 2 s (about five seconds in all): a Redis restart
# or failover is a pause in the worker, not a failed job. Every command the
# broker sends may be repeated: a repeated enqueue is a duplicate message, which
# Dramatiq's at-least-once delivery already asks every actor to tolerate.
REDIS_RETRIES = 5
REDIS_BACKOFF = ExponentialBackoff(cap=2.0, base=0.1)


def redis_client(settings: Settings) -> Redis:
    """The process's sync Redis client (bytes replies: Dramatiq decodes messages itself)."""
    return Redis.from_url(
        settings.redis_url,
        retry=Retry(REDIS_BACKOFF, REDIS_RETRIES),
    )


def make_broker(settings: Settings, client: Redis) -> dramatiq.Broker:
    """The broker (Redis on `client`, or RabbitMQ when BROKER_URL names it), not yet
    the global one (tests make several)."""
    broker: dramatiq.Broker
    if uses_rabbitmq(settings):
        assert settings.broker_url is not None
        broker = rabbitmq_broker(settings.broker_url, settings.broker_namespace)
    else:
        # A worker that stops heartbeating (SIGKILL, a lost machine) has its unacked
        # messages requeued by the next maintenance pass (processors.redelivery).
        broker = RedisBroker(
            client=client,
            heartbeat_timeout=int(settings.worker_heartbeat_timeout * 1000),
            maintenance_chance=settings.worker_maintenance_chance,
        )
    # Actors that count their own retries (webhook attempts) read them off the message.
    broker.add_middleware(CurrentMessage())
    return broker


def setup_broker(settings: Settings, client: Redis) -> dramatiq.Broker:
    """Make the broker and set it as Dramatiq's global one; before any actor module is imported."""
    broker = make_broker(settings, client)
    dramatiq.set_broker(broker)
    return broker
