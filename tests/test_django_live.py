"""`client_sdk.django` against a live `upload-service serve`: a token from the app
opens an upload, the service's webhooks reach the app's receiver through a real
worker, and the reconcile command catches up on what no webhook said."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import running_worker
from conftest import LiveServer
from django.core.management import call_command
from django.test import Client, override_settings
from django_helpers import (
    WEBHOOK_SECRET,
    TrackedUpload,
    User,
    empty_tables,
    media_upload_settings,
    received,
    serving_django,
)
from live_helpers import wait_until

from client_sdk import RetryPolicy, Uploader
from client_sdk.django import signals
from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.one_path]


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    empty_tables()
    yield
    empty_tables()


def token_from_the_app(server_url: str) -> dict[str, Any]:
    client = Client()
    client.force_login(User.objects.create_user("grace"))
    with override_settings(MEDIA_UPLOAD=media_upload_settings(SERVER_URL=server_url)):
        resp = client.post("/media-upload/token/")
    assert resp.status_code == 200, resp.content
    body: dict[str, Any] = resp.json()
    return body


def reconcile(server_url: str, *ids: str) -> str:
    out = io.StringIO()
    with override_settings(MEDIA_UPLOAD=media_upload_settings(SERVER_URL=server_url)):
        call_command("media_upload_reconcile", *ids, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_reconcile_signals_each_change_once_as_the_webhooks_would_have(
    live_server: LiveServer, tmp_path: Path
) -> None:
    issued = token_from_the_app(live_server.url)
    assert issued["endpoint"] == live_server.url + "/files/"
    data = os.urandom(300_000)
    up = Uploader(live_server.url, issued["token"], chunk_size=100_000, resume=False)
    with up:
        partial = up.upload(io.BytesIO(data), stop_at=100_000)  # the server takes the token
        with received(signals.upload_created) as created:
            out = reconcile(live_server.url, partial.id)  # an id the backend learned itself
        assert [c["upload"].upload_id for c in created] == [partial.id]
        assert created[0]["reconciled"] is True and created[0]["webhook_id"] is None
        assert f"{partial.id}: upload.created" in out

        up.upload(io.BytesIO(data), url=partial.url)
        with received(signals.upload_completed) as completed:
            reconcile(live_server.url)  # tracked now: polled without being named
        assert len(completed) == 1 and completed[0]["upload"].state == "uploaded"

        up.terminate(partial.url)
        with received(signals.upload_terminated) as terminated:
            reconcile(live_server.url)
            out = reconcile(live_server.url)  # final: not polled, not signalled again
    assert len(terminated) == 1
    assert "checked 0 upload(s)" in out
    assert TrackedUpload.objects.get(upload_id=partial.id).state == "terminated"


@pytest.mark.slow
def test_the_services_webhooks_reach_the_apps_signals(settings: Settings, tmp_path: Path) -> None:
    with serving_django() as django_url:
        hooked = settings.with_changes(
            webhook_url=django_url + "/media-upload/webhooks/",
            webhook_secret=WEBHOOK_SECRET,
            webhook_schedule=(0.2, 0.5),
        )
        server = LiveServer(hooked).start()
        try:
            issued = token_from_the_app(server.url)
            events: dict[str, list[dict[str, Any]]] = {}
            with (
                received(signals.upload_created) as events["upload.created"],
                received(signals.upload_completed) as events["upload.completed"],
                received(signals.media_failed) as events["media.failed"],
                running_worker(hooked),
            ):
                with Uploader(
                    server.url, issued["token"], resume=False, retry=RetryPolicy(retries=1)
                ) as up:
                    # Not media: the pipeline's probe refuses it, a quick final state.
                    result = up.upload(io.BytesIO(os.urandom(50_000)))
                wait_until(lambda: len(events["media.failed"]) == 1, "media.failed", timeout=60)
        finally:
            server.stop()
    for event_type, calls in events.items():
        assert len(calls) == 1, (event_type, calls)
        assert calls[0]["event"]["data"]["id"] == result.id
        assert calls[0]["webhook_id"].startswith("msg_") and calls[0]["reconciled"] is False
    upload = TrackedUpload.objects.get(upload_id=result.id)
    assert upload.state == "failed" and upload.record["error"]["code"]
    assert upload.owner == str(User.objects.get(username="grace").pk)
