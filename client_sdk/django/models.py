"""What the app remembers: the uploads it has heard of, and the webhooks it handled.

Kept in the database rather than a cache because both must hold across processes
and restarts: a webhook id remembered only by one process's memory would be
handled again by another, and the unique index is what makes two concurrent
deliveries of one event signal once.
"""

from __future__ import annotations

from django.db import models

FINAL_STATES = ("ready", "failed", "terminated", "expired")


class TrackedUpload(models.Model):
    """An upload as the service last described it (its status object)."""

    upload_id = models.CharField(max_length=128, primary_key=True)
    owner = models.CharField(max_length=255, db_index=True)  # the token's `sub`
    state = models.CharField(max_length=16, db_index=True)
    record = models.JSONField(default=dict)  # the latest status object seen
    # The record's own `updated_at`: an older record (a late retry) never replaces
    # a newer one. The service writes one fixed ISO 8601 format, so text order is time order.
    record_updated_at = models.CharField(max_length=40, blank=True, default="")
    signalled = models.JSONField(default=list)  # event types already signalled
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "tracked upload"

    def __str__(self) -> str:
        return f"{self.upload_id} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class WebhookDelivery(models.Model):
    """One handled `webhook-id`: a second delivery of it is answered 2xx and ignored."""

    webhook_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=64)
    upload_id = models.CharField(max_length=128, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.webhook_id} {self.event_type}"
