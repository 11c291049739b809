"""One Django signal per event of the service, sent once per upload and event.

Every signal is sent with `sender=TrackedUpload` and these keyword arguments:

    upload       the TrackedUpload (upload_id, owner, state, record: the status object)
    event        {"type", "timestamp", "data"}: data is the status object at the event
    webhook_id   the delivery's `webhook-id`; None when media_upload_reconcile found
                 the change by polling
    reconciled   True when media_upload_reconcile found the change by polling

Receivers run inside the transaction that records the event: a receiver that
raises rolls the record back and the webhook is answered 500, so the service
delivers it again later. Work outside the database (mail, queues) belongs in
`transaction.on_commit`.
"""

from __future__ import annotations

from django.dispatch import Signal

upload_created = Signal()
upload_completed = Signal()  # every byte arrived; processing starts
media_playable = Signal()  # the smallest rendition plays (outputs.hls); the rest follows
media_ready = Signal()  # outputs (HLS, poster, captions) are published
media_failed = Signal()  # processing gave up: upload.record["error"] says why
upload_terminated = Signal()  # deleted by its owner (tus termination)
upload_expired = Signal()  # left unfinished past the service's UPLOAD_EXPIRY

BY_EVENT = {
    "upload.created": upload_created,
    "upload.completed": upload_completed,
    "media.playable": media_playable,
    "media.ready": media_ready,
    "media.failed": media_failed,
    "upload.terminated": upload_terminated,
    "upload.expired": upload_expired,
}
