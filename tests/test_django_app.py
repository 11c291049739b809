"""`client_sdk.django` through Django's own test client: the token endpoint, the
webhook receiver (signatures, replays, receivers that fail), the signals, and the
migrations matching the models."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from conftest import TOKEN_SECRET
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import Client, override_settings
from django_helpers import (
    SERVER_URL,
    WEBHOOK_SECRET,
    TrackedUpload,
    User,
    WebhookDelivery,
    empty_tables,
    media_upload_settings,
    received,
)
from standardwebhooks.webhooks import Webhook

from client_sdk.django import signals

pytestmark = pytest.mark.one_path

TOKEN_URL = "/media-upload/token/"
WEBHOOK_URL = "/media-upload/webhooks/"


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    empty_tables()
    yield
    empty_tables()


@pytest.fixture
def user() -> User:
    return User.objects.create_user("ada", password="pw")


def logged_in(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def status_record(upload_id: str = "up1", state: str = "ready", **changes: Any) -> dict[str, Any]:
    record = {
        "id": upload_id,
        "owner": "7",
        "state": state,
        "offset": 10,
        "length": 10,
        "metadata": {"filename": "talk.mp4"},
        "meta": {"course_id": 12},
        "progress": None,
        "media": None,
        "outputs": {},
        "error": None,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "updated_at": "2026-01-01T00:00:05.000000Z",
    }
    return record | changes


def post_webhook(
    client: Client,
    event_type: str,
    record: dict[str, Any],
    msg_id: str = "msg_1",
    *,
    secret: str = WEBHOOK_SECRET,
    sent_at: datetime | None = None,
) -> Any:
    """Signed by `standardwebhooks`, the reference implementation, not by the SDK."""
    body = json.dumps({"type": event_type, "timestamp": "2026-01-01T00:00:06Z", "data": record})
    when = sent_at or datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
    }
    return client.post(WEBHOOK_URL, body, content_type="application/json", headers=headers)


# --- token/ ------------------------------------------------------------------------


def test_a_logged_in_user_gets_a_token_for_the_service(user: User) -> None:
    resp = logged_in(user).post(TOKEN_URL)
    assert resp.status_code == 200
    assert resp["Cache-Control"] == "no-store"
    body = resp.json()
    claims = jwt.decode(body["token"], TOKEN_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user.pk)
    assert body["endpoint"] == SERVER_URL + "/files/"
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert int(expires.timestamp()) == claims["exp"]
    assert 3500 < claims["exp"] - time.time() <= 3600


def test_no_token_for_anonymous_users_nor_for_get() -> None:
    resp = Client().post(TOKEN_URL)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "login_required"
    assert Client().get(TOKEN_URL).status_code == 405


def test_the_token_endpoint_keeps_djangos_csrf_check(user: User) -> None:
    client = logged_in(user, enforce_csrf_checks=True)
    assert client.post(TOKEN_URL).status_code == 403
    secret = "a" * 32  # what Django keeps in the csrftoken cookie; a page sends it back
    client.cookies["csrftoken"] = secret
    assert client.post(TOKEN_URL, headers={"X-CSRFToken": secret}).status_code == 200


def course_claims(request: Any) -> dict[str, Any]:
    """A project's hook: the course from the request, a limit per user."""
    course = json.loads(request.body or b"{}").get("course_id")
    if course == 13:
        raise PermissionDenied("you do not teach course 13")
    return {"meta": {"course_id": course}, "max_bytes": 5 * 1024**3, "ttl": 600}


def test_the_claims_hook_adds_course_metadata_limits_and_refusals(user: User) -> None:
    client = logged_in(user)
    with override_settings(MEDIA_UPLOAD=media_upload_settings(TOKEN_CLAIMS=course_claims)):
        resp = client.post(TOKEN_URL, {"course_id": 12}, content_type="application/json")
        refused = client.post(TOKEN_URL, {"course_id": 13}, content_type="application/json")
    claims = jwt.decode(resp.json()["token"], TOKEN_SECRET, algorithms=["HS256"])
    assert claims["meta"] == {"course_id": 12} and claims["max_bytes"] == 5 * 1024**3
    assert claims["exp"] - claims["iat"] == 600
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "you do not teach course 13"


def test_the_claims_hook_may_be_a_dotted_path(user: User) -> None:
    hook = f"{__name__}.course_claims"
    with override_settings(MEDIA_UPLOAD=media_upload_settings(TOKEN_CLAIMS=hook)):
        resp = logged_in(user).post(TOKEN_URL, {"course_id": 4}, content_type="application/json")
    assert jwt.decode(resp.json()["token"], TOKEN_SECRET, algorithms=["HS256"])["meta"] == {
        "course_id": 4
    }


# --- webhooks/ ----------------------------------------------------------------------


def test_a_signed_event_is_recorded_and_signalled() -> None:
    with received(signals.media_ready) as calls:
        resp = post_webhook(Client(), "media.ready", status_record())
    assert resp.status_code == 200 and resp.json() == {
        "received": "media.ready",
        "duplicate": False,
    }
    [call] = calls
    assert call["webhook_id"] == "msg_1" and call["reconciled"] is False
    assert call["event"]["data"]["id"] == "up1"
    assert call["upload"].upload_id == "up1" and call["upload"].state == "ready"
    stored = TrackedUpload.objects.get(upload_id="up1")
    assert stored.owner == "7" and stored.record["meta"] == {"course_id": 12}


def test_a_replayed_webhook_id_is_answered_2xx_without_a_second_signal() -> None:
    client = Client()
    with received(signals.upload_created) as calls:
        first = post_webhook(client, "upload.created", status_record(state="uploading"))
        again = post_webhook(client, "upload.created", status_record(state="uploading"))
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True
    assert len(calls) == 1
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("wrong secret", {"secret": "whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="}),
        ("six minutes old", {"sent_at": datetime.fromtimestamp(time.time() - 360, UTC)}),
    ],
)
def test_bad_signatures_and_stale_timestamps_are_refused(case: str, change: Any) -> None:
    with received(signals.media_ready) as calls:
        resp = post_webhook(Client(), "media.ready", status_record(), **change)
    assert resp.status_code == 400, case
    assert resp.json()["error"]["code"] == "invalid_webhook"
    assert calls == [] and not TrackedUpload.objects.exists()


def test_unsigned_tampered_and_shapeless_requests_are_refused() -> None:
    client = Client()
    assert client.post(WEBHOOK_URL, "{}", content_type="application/json").status_code == 400
    assert client.get(WEBHOOK_URL).status_code == 405
    resp = post_webhook(client, "media.ready", {"no": "id"})
    assert resp.status_code == 400 and "upload id" in resp.json()["error"]["message"]


def test_a_failing_receiver_leaves_the_event_to_be_delivered_again() -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("the receiver's database is down")

    signals.media_ready.connect(broken)
    try:
        resp = post_webhook(Client(raise_request_exception=False), "media.ready", status_record())
    finally:
        signals.media_ready.disconnect(broken)
    assert resp.status_code == 500  # so the service retries
    assert not WebhookDelivery.objects.exists() and not TrackedUpload.objects.exists()
    with received(signals.media_ready) as calls:
        assert post_webhook(Client(), "media.ready", status_record()).status_code == 200
    assert len(calls) == 1


def test_a_late_older_event_is_signalled_but_does_not_roll_the_record_back() -> None:
    client = Client()
    post_webhook(client, "media.ready", status_record(), "msg_ready")
    early = status_record(state="uploading", updated_at="2026-01-01T00:00:00.000000Z")
    with received(signals.upload_created) as calls:
        post_webhook(client, "upload.created", early, "msg_created")
    assert len(calls) == 1
    assert TrackedUpload.objects.get(upload_id="up1").state == "ready"


def test_an_event_type_this_app_does_not_know_is_accepted() -> None:
    resp = post_webhook(Client(), "media.thumbnailed", status_record())
    assert resp.status_code == 200
    assert TrackedUpload.objects.get(upload_id="up1").signalled == []


def test_the_migrations_match_the_models() -> None:
    out = io.StringIO()
    call_command("makemigrations", "media_upload", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
