"""Broker set-up, done before any actor module is imported."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from upload_service.settings import Settings


def setup_broker(settings: Settings | None = None) -> dramatiq.Broker:
    settings = settings or Settings.from_env()
    broker = RedisBroker(url=settings.redis_url)
    dramatiq.set_broker(broker)
    return broker
