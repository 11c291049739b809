"""Catching up by polling: uploads whose webhooks never came (receiver down for longer
than the service retries, a lost WEBHOOK_URL) still reach their final state here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from .._status import StatusClient
from .events import EVENT_OF_STATE, handle_event
from .models import FINAL_STATES, TrackedUpload, WebhookDelivery


@dataclass
class Report:
    checked: int = 0
    signalled: list[tuple[str, str]] = field(default_factory=list)  # (upload id, event type)
    missing: list[str] = field(default_factory=list)  # unknown to the service


def reconcile(client: StatusClient, extra_ids: Iterable[str] = ()) -> Report:
    """Poll every tracked upload not yet final (and `extra_ids`, learned elsewhere),
    and signal what changed as the webhook would have."""
    pending = TrackedUpload.objects.exclude(state__in=FINAL_STATES)
    ids = list(dict.fromkeys([*pending.values_list("upload_id", flat=True), *extra_ids]))
    report = Report(checked=len(ids))
    records = client.get_many(ids)
    for upload_id in ids:
        record = records.get(upload_id)
        if record is None:
            report.missing.append(upload_id)
            continue
        event_type = EVENT_OF_STATE.get(str(record.get("state")), "upload.created")
        event = {
            "type": event_type,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": record,
        }
        before = set(_signalled(upload_id))
        handle_event(event, webhook_id=None)
        if event_type in set(_signalled(upload_id)) - before:
            report.signalled.append((upload_id, event_type))
    return report


def _signalled(upload_id: str) -> list[str]:
    found = TrackedUpload.objects.filter(upload_id=upload_id).values_list("signalled", flat=True)
    return list(found.first() or [])


def forget_deliveries(older_than: timedelta) -> int:
    """Drop remembered webhook ids past any retry: the table would otherwise only grow."""
    deleted, _ = WebhookDelivery.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return int(deleted)
