"""Lifecycle events: a status change that the backend hears about by webhook.

Emitting only enqueues a delivery job; the POST itself runs in a worker
(`processors.webhooks`). Without WEBHOOK_URL nothing is sent.
"""

from __future__ import annotations

import secrets
from typing import Any

from upload_service.core.jobs import JobQueue
from upload_service.core.status import Record, iso

EVENT_TYPES = (
    "upload.created",
    "upload.completed",
    "media.playable",
    "media.ready",
    "media.failed",
    "upload.terminated",
    "upload.expired",
)


def build_event(event_type: str, record: Record) -> dict[str, Any]:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    return {
        "id": "msg_" + secrets.token_urlsafe(18),
        "type": event_type,
        "timestamp": iso(),
        "data": record,
    }


def emit(jobs: JobQueue, webhooks_enabled: bool, event_type: str, record: Record) -> None:
    if webhooks_enabled:
        jobs.send("deliver_webhook", build_event(event_type, record))
