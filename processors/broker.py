"""Broker set-up, done before any actor module is imported."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from upload_service.core.settings import Settings


def setup_broker(settings: Settings | None = None) -> dramatiq.Broker:
    settings = settings or Settings.from_env()
    # A worker that stops heartbeating (SIGKILL, a lost machine) has its unacked
    # messages requeued by the next maintenance pass of any live worker.
    broker = RedisBroker(
        url=settings.redis_url,
        heartbeat_timeout=int(settings.worker_heartbeat_timeout * 1000),
        maintenance_chance=settings.worker_maintenance_chance,
    )
    dramatiq.set_broker(broker)
    return broker
