"""Handling one event, from a webhook or from polling: record it, then signal it once.

Deliveries are at least once, may arrive out of order (a retried `upload.created`
after `media.ready`), and polling may find a change before its webhook arrives.
So: a `webhook-id` seen before is dropped; the stored record is replaced only by
a newer one; and each event type is signalled once per upload, whichever way it
came first.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from .models import TrackedUpload, WebhookDelivery
from .signals import BY_EVENT

# The event that announces an upload's arrival in a state, for changes found by polling.
EVENT_OF_STATE = {
    "uploaded": "upload.completed",
    "processing": "upload.completed",
    "playable": "media.playable",
    "ready": "media.ready",
    "failed": "media.failed",
    "terminated": "upload.terminated",
    "expired": "upload.expired",
}


def handle_event(event: dict[str, Any], webhook_id: str | None) -> bool:
    """Record `event` and send its signal; False for a webhook id handled before.

    Runs in one transaction: if a receiver raises, nothing is recorded and the
    exception propagates (the webhook is answered 500 and delivered again).
    """
    record = event["data"]
    with transaction.atomic():
        if webhook_id is not None and not _first_delivery(webhook_id, event):
            return False
        upload = _remember(record)
        if event["type"] in upload.signalled:
            return True  # polling or an earlier delivery (another id) signalled it
        signal = BY_EVENT.get(event["type"])
        if signal is None:
            return True  # an event type newer than this app: recorded, nothing to signal
        upload.signalled = [*upload.signalled, event["type"]]
        upload.save(update_fields=["signalled", "updated_at"])
        signal.send(
            sender=TrackedUpload,
            upload=upload,
            event=event,
            webhook_id=webhook_id,
            reconciled=webhook_id is None,
        )
    return True


def _first_delivery(webhook_id: str, event: dict[str, Any]) -> bool:
    try:
        with transaction.atomic():  # a savepoint: the outer transaction survives a duplicate
            WebhookDelivery.objects.create(
                webhook_id=webhook_id,
                event_type=event["type"],
                upload_id=str(event["data"].get("id", "")),
            )
    except IntegrityError:
        return False
    return True


def _remember(record: dict[str, Any]) -> TrackedUpload:
    upload, created = TrackedUpload.objects.select_for_update().get_or_create(
        upload_id=record["id"],
        defaults={
            "owner": str(record.get("owner") or ""),
            "state": str(record.get("state") or ""),
            "record": record,
            "record_updated_at": str(record.get("updated_at") or ""),
        },
    )
    newer = str(record.get("updated_at") or "")
    if not created and newer >= upload.record_updated_at:
        upload.record = record
        upload.state = str(record.get("state") or upload.state)
        upload.record_updated_at = newer
        upload.save(update_fields=["record", "state", "record_updated_at", "updated_at"])
    return upload
