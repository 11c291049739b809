"""Sending work to the Dramatiq workers without importing them.

The server names actors by string and enqueues plain Dramatiq messages, so it
never imports ffmpeg, Whisper or b2sdk code. `processors` declares the actors
with the same names and queues.
"""

from __future__ import annotations

from typing import Any, Protocol

import dramatiq

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
    """Sends through `broker`: in a server, a RedisBroker on the process's own client
    (`RedisBroker(client=...)`), so the broker opens no connections of its own."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

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
