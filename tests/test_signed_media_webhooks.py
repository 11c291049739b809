"""MEDIA_ACCESS=signed (the default): media URLs in webhook bodies.

Signed when delivered, logged plain (a resend is signed afresh), and never sent
unsigned by a worker that has no key. A real HTTP receiver on loopback.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
from signed_media_helpers import publish_ready_upload
from webhook_helpers import SECRET, Receiver

from upload_service.core.events import build_event
from upload_service.core.playback import PlaybackURLs
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore
from upload_service.core.webhook_log import WebhookLog


@pytest.fixture
def upload_id(settings: Settings, tmp_path: Path) -> str:
    """A `ready` upload with its outputs published, as the pipeline leaves it."""
    return publish_ready_upload(settings, tmp_path / "out")


@pytest.fixture
def webhooks() -> ModuleType:
    return importlib.import_module("processors.webhooks")


def test_webhook_bodies_are_signed_at_delivery_and_logged_plain(
    settings: Settings, upload_id: str, webhooks: ModuleType, receiver: Receiver
) -> None:
    try:
        hook_settings = settings.with_changes(webhook_url=receiver.url, webhook_secret=SECRET)
        webhooks.configure(hook_settings)
        record = StatusStore(settings.status_dir, None).get(upload_id)
        assert record is not None
        event = build_event("media.ready", record)
        assert webhooks.deliver(event) == "delivered"
    finally:
        webhooks.configure(None)
    [request] = receiver.requests
    outputs = json.loads(request.body)["data"]["outputs"]
    expected = PlaybackURLs.from_settings(settings).record(record)["outputs"]
    assert outputs == expected and "?exp=" in outputs["hls"]
    assert outputs["original"] == f"/files/{upload_id}"
    # The log keeps the event as emitted: a resend is signed afresh when it goes out.
    [logged] = WebhookLog(settings.data_dir / "webhooks").history(upload_id)
    assert logged["data"]["outputs"]["hls"] == f"/media/{upload_id}/hls/master.m3u8"


def test_a_worker_without_a_key_does_not_send_unsigned_media(
    settings: Settings, upload_id: str, webhooks: ModuleType, receiver: Receiver
) -> None:
    keyless = settings.with_changes(
        token_secret=None, webhook_url=receiver.url, webhook_secret=SECRET
    )
    record = StatusStore(settings.status_dir, None).get(upload_id)
    assert record is not None
    result = webhooks.attempt_delivery(keyless, build_event("media.ready", record))
    assert result.status is None and "MEDIA_SIGNING_KEY" in result.error
    assert receiver.requests == []
    public = keyless.with_changes(media_access="public")
    assert webhooks.attempt_delivery(public, build_event("media.ready", record)).ok
