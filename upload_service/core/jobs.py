"""Sending work to the Dramatiq workers without importing them.

The server names actors by string and enqueues plain Dramatiq messages, so it
never imports ffmpeg, Whisper or b2sdk code. `processors` declares the actors
with the same names and queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import dramatiq
from dramatiq.brokers.redis import RedisBroker

if TYPE_CHECKING:
    from redis import Redis

    from upload_service.core.settings import Settings


def uses_rabbitmq(settings: Settings) -> bool:
    """BROKER_URL names RabbitMQ (else the broker is Redis, at BROKER_URL or REDIS_URL)."""
    return (settings.broker_url or "").startswith(("amqp://", "amqps://"))


PIPELINE_QUEUE = "media"
WEBHOOK_QUEUE = "webhooks"
MAINTENANCE_QUEUE = "maintenance"

ACTOR_QUEUES = {
    "process_upload": PIPELINE_QUEUE,
    "withdraw_upload": PIPELINE_QUEUE,
    "deliver_webhook": WEBHOOK_QUEUE,
    "sweep_expired": MAINTENANCE_QUEUE,
}


class JobQueue(Protocol):
    def send(self, actor: str, *args: Any) -> None: ...


class DramatiqJobQueue:
    """Sends through `broker`: a worker's own broker, or one over a process's own client
    (`on_redis`), so that it opens no connections of its own."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    @classmethod
    def on_redis(cls, client: Redis) -> DramatiqJobQueue:
        """Over the process's sync Redis client (bytes replies), with no pool of its own."""
        return cls(RedisBroker(client=client))

    @classmethod
    def for_settings(cls, settings: Settings, client: Redis) -> DramatiqJobQueue:
        """The broker BROKER_URL names: RabbitMQ, or else Redis over `client`."""
        if uses_rabbitmq(settings):
            from upload_service.core.rabbitmq import rabbitmq_broker

            assert settings.broker_url is not None
            return cls(rabbitmq_broker(settings.broker_url, settings.broker_namespace))
        return cls.on_redis(client)

    def send(self, actor: str, *args: Any) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=ACTOR_QUEUES[actor], actor_name=actor, args=args, kwargs={}, options={}
        )
        self.broker.enqueue(message)


class MemoryJobQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def send(self, actor: str, *args: Any) -> None:
        self.sent.append((actor, args))
