"""Webhooks: signed delivery from a real worker to a real HTTP receiver on loopback.

The receiver is a threading `http.server` scripted to fail, hang or answer 410;
the worker is an in-process Dramatiq worker on a private Redis database;
signatures are checked with the `standardwebhooks` package, an independent
implementation of the specification.
"""

from __future__ import annotations

import base64
import importlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis
from conftest import API_KEY, LiveServer, RedisServer, settings_env
from dramatiq_helpers import DramatiqClock
from media_helpers import make_video
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as StdVerificationError
from webhook_helpers import SECRET, Harness, Receiver, start_harness, wait_until

from client_sdk import (
    InvalidSignatureError,
    InvalidTimestampError,
    MissingHeadersError,
    WebhookVerificationError,
    verify_webhook,
)
from upload_service.core.jobs import DramatiqJobQueue
from upload_service.core.settings import Settings
from upload_service.core.webhook_log import WebhookLog

pytestmark = pytest.mark.one_path

# A database of its own: other engineers' workers never see these messages.
WEBHOOK_DB = 7


@pytest.fixture
def webhooks() -> ModuleType:
    # Imported when used, not at collection: importing declares the actor on the
    # current broker, which should be the one `processors.actors` sets up.
    return importlib.import_module("processors.webhooks")


@pytest.fixture
def wh_settings(settings: Settings, redis_server: RedisServer, receiver: Receiver) -> Settings:
    url = f"redis://127.0.0.1:{redis_server.port}/{WEBHOOK_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return settings.with_changes(
        redis_url=url,
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_schedule=(0.2, 0.2),
        webhook_timeout=5.0,
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> DramatiqClock:
    return DramatiqClock(monkeypatch)


@pytest.fixture
def harness(wh_settings: Settings, receiver: Receiver) -> Iterator[Harness]:
    yield from start_harness(wh_settings, receiver)


def std_verify(request_headers: dict[str, str], body: bytes) -> dict:
    payload: dict = Webhook(SECRET).verify(body, request_headers)
    return payload


# --- signing, both ways, against standardwebhooks --------------------------------


def test_signature_matches_the_standard_webhooks_reference(webhooks: ModuleType) -> None:
    body = b'{"type":"upload.created","timestamp":"2026-11-28T17:00:00Z","data":{"id":"x"}}'
    headers = webhooks.signed_headers(SECRET, "msg_abc", body)
    assert std_verify(headers, body)["type"] == "upload.created"
    assert verify_webhook(SECRET, headers, body)["data"] == {"id": "x"}
    # And the SDK accepts what the reference implementation signs.
    now = datetime.now(UTC)
    reference = Webhook(SECRET).sign("msg_xyz", now, body.decode())
    theirs = {
        "Webhook-Id": "msg_xyz",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": "v0,bogus " + reference,
    }
    assert verify_webhook(SECRET, theirs, body)["type"] == "upload.created"


def test_verify_webhook_rejects_tampering_staleness_and_missing_headers(
    webhooks: ModuleType,
) -> None:
    body = b'{"type":"media.ready","timestamp":"2026-11-28T17:00:00Z","data":{"id":"x"}}'
    headers = webhooks.signed_headers(SECRET, "msg_1", body)

    with pytest.raises(InvalidSignatureError, match="altered"):
        verify_webhook(SECRET, headers, body.replace(b"media.ready", b"media.failed"))
    other = "whsec_" + base64.b64encode(b"another-secret-another-secret!!!").decode()
    with pytest.raises(InvalidSignatureError):
        verify_webhook(other, headers, body)

    old = webhooks.signed_headers(SECRET, "msg_1", body, now=time.time() - 6 * 60)
    with pytest.raises(InvalidTimestampError, match="old"):
        verify_webhook(SECRET, old, body)
    future = webhooks.signed_headers(SECRET, "msg_1", body, now=time.time() + 6 * 60)
    with pytest.raises(InvalidTimestampError, match="future"):
        verify_webhook(SECRET, future, body)
    # The reference implementation agrees that a 6-minute-old signature is stale.
    with pytest.raises(StdVerificationError):
        std_verify(old, body)

    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(MissingHeadersError, match=name):
            verify_webhook(SECRET, partial, body)
    # One base class to catch them all.
    assert issubclass(InvalidTimestampError, WebhookVerificationError)
    with pytest.raises(ValueError, match="whsec_"):
        verify_webhook("whsec_not base64!", headers, body)


def test_retry_after_accepts_seconds_and_http_dates(webhooks: ModuleType) -> None:
    assert webhooks.parse_retry_after("7") == 7.0
    assert webhooks.parse_retry_after("Sat, 28 Nov 2026 18:00:30 GMT", now=1795888800.0) == 30.0
    assert webhooks.parse_retry_after("soon") is None
    assert webhooks.parse_retry_after(None) is None


# --- delivery and retries -----------------------------------------------------------


def test_receiver_failing_twice_gets_three_attempts_with_one_webhook_id(
    harness: Harness, receiver: Receiver
) -> None:
    receiver.script = [("status", 500, {}), ("status", 502, {})]
    event = harness.emit("media.ready")
    harness.drain()

    assert receiver.ids() == [event["id"]] * 3
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1, "every attempt carries the same body"
    for request in receiver.requests:
        payload = std_verify(request.headers, request.body)
        assert payload == {k: event[k] for k in ("type", "timestamp", "data")}
        assert payload["data"]["updated_at"]
    attempts = harness.attempts()
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"),
        (2, 502, "retrying"),
        (3, 200, "delivered"),
    ]
    assert attempts[0]["error"].startswith("HTTP 500")
    assert all(a["event_id"] == event["id"] and a["type"] == "media.ready" for a in attempts)
    assert all(a["duration_ms"] >= 0 and a["at"] for a in attempts)


def test_hanging_receiver_is_timed_out_and_retried(harness: Harness, receiver: Receiver) -> None:
    harness.use(webhook_timeout=0.5)
    receiver.script = [("hang",)]
    event = harness.emit()
    harness.drain()

    assert receiver.ids() == [event["id"]] * 2
    first, second = harness.attempts()
    assert first["status"] is None and "timed out" in first["error"]
    assert first["outcome"] == "retrying"
    assert (second["status"], second["outcome"]) == (200, "delivered")


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_replaces_the_scheduled_delay(
    harness: Harness, receiver: Receiver, clock: DramatiqClock, status: int
) -> None:
    receiver.script = [("status", status, {"Retry-After": "3600"})]
    event = harness.emit()
    retry = harness.wait_for_retry(1)
    # The schedule says 0.2 s; the receiver asked for an hour and gets it.
    assert retry["options"]["eta"] - clock.now_ms == 3600 * 1000
    clock.advance_to(retry["options"]["eta"])
    harness.drain()

    assert receiver.ids() == [event["id"]] * 2
    first, second = harness.attempts()
    assert (first["status"], first["outcome"], first["retry_in"]) == (status, "retrying", 3600.0)
    assert second["outcome"] == "delivered"


def test_410_stops_the_retries(harness: Harness, receiver: Receiver) -> None:
    receiver.script = [("status", 410, {})]
    harness.emit()
    harness.drain()

    assert len(receiver.requests) == 1
    [only] = harness.attempts()
    assert (only["status"], only["outcome"], only["retry_in"]) == (410, "stopped", None)


# --- the retry schedule, hours of it, on Dramatiq's stopped clock ------------------------


def run_schedule(harness: Harness, clock: DramatiqClock, retries: int) -> list[float]:
    """Let `retries` scheduled retries come due; the seconds each one waited."""
    waits = []
    for count in range(1, retries + 1):
        eta = harness.wait_for_retry(count)["options"]["eta"]
        waits.append((eta - clock.now_ms) / 1000)
        clock.advance_to(eta)
    harness.drain()
    return waits


def test_a_failing_receiver_is_retried_for_hours_on_the_schedule_then_given_up(
    harness: Harness, receiver: Receiver, clock: DramatiqClock
) -> None:
    schedule = Settings.webhook_schedule  # the default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    assert sum(schedule) > 24 * 3600
    harness.use(webhook_schedule=schedule)
    receiver.script = [("status", 500, {})] * (len(schedule) + 1)
    event = harness.emit()

    waits = run_schedule(harness, clock, len(schedule))

    assert waits == list(schedule)
    assert receiver.ids() == [event["id"]] * (len(schedule) + 1)
    assert len({r.body for r in receiver.requests}) == 1
    # The delivery log (what GET /v1/uploads/{id}/events lists): one entry per attempt.
    assert [
        (a["attempt"], a["status"], a["outcome"], a["retry_in"]) for a in harness.attempts()
    ] == [
        *[(n, 500, "retrying", delay) for n, delay in enumerate(schedule, start=1)],
        (len(schedule) + 1, 500, "gave_up", None),
    ]


def test_a_resend_numbers_on_and_starts_the_schedule_afresh(
    harness: Harness, receiver: Receiver, clock: DramatiqClock
) -> None:
    harness.use(webhook_schedule=(60.0, 600.0))
    receiver.script = [("status", 500, {})] * 4
    event = harness.emit()
    run_schedule(harness, clock, 2)
    # What POST .../events/{id}/resend enqueues: the event, the next attempt number, 0.
    DramatiqJobQueue(harness.broker).send("deliver_webhook", event, 4, 0)
    waits = run_schedule(harness, clock, 1)

    assert waits == [60.0]
    assert receiver.ids() == [event["id"]] * 5
    assert [(a["attempt"], a["outcome"]) for a in harness.attempts()] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "gave_up"),
        (4, "retrying"),
        (5, "delivered"),
    ]


def test_a_retry_queued_by_an_earlier_release_carries_on_where_it_was(
    harness: Harness, receiver: Receiver, clock: DramatiqClock
) -> None:
    """Earlier releases queued each retry as a message of its own: (event, attempt, retry)."""
    harness.use(webhook_schedule=(5.0, 300.0, 1800.0))
    receiver.script = [("status", 500, {})]
    event = harness.event()
    DramatiqJobQueue(harness.broker).send("deliver_webhook", event, 3, 2)

    waits = run_schedule(harness, clock, 1)

    assert waits == [1800.0]
    assert [(a["attempt"], a["outcome"], a["retry_in"]) for a in harness.attempts()] == [
        (3, "retrying", 1800.0),
        (4, "delivered", None),
    ]
    assert receiver.ids() == [event["id"]] * 2


# --- the whole path: server -> Redis -> worker -> receiver ---------------------------


@pytest.mark.e2e
def test_processed_upload_events_arrive_signed_and_can_be_listed_and_resent(
    harness: Harness, receiver: Receiver, wh_settings: Settings, make_token
) -> None:
    server = LiveServer(wh_settings).start()
    try:
        token = make_token("user-1", meta={"course_id": 12})
        data = b"not really media, but bytes all the same" * 100
        created = httpx.post(
            f"{server.url}/files/",
            content=data,
            headers={
                "Authorization": f"Bearer {token}",
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert created.status_code == 201, created.text
        upload_id = created.headers["location"].rstrip("/").rsplit("/", 1)[-1]

        wait_until(lambda: len(receiver.requests) >= 2, what="two webhooks")
        harness.drain()
        by_type = {}
        for request in receiver.requests:
            payload = std_verify(request.headers, request.body)
            assert verify_webhook(SECRET, request.headers, request.body) == payload
            assert payload["data"]["id"] == upload_id
            assert payload["data"]["meta"] == {"course_id": 12}
            by_type[payload["type"]] = (request.headers["webhook-id"], payload)
        assert {"upload.created", "upload.completed"} <= set(by_type)
        assert by_type["upload.completed"][1]["data"]["state"] == "uploaded"

        api = {"Authorization": f"Bearer {API_KEY}"}
        listed = httpx.get(f"{server.url}/v1/uploads/{upload_id}/events", headers=api)
        assert listed.status_code == 200
        events = {e["type"]: e for e in listed.json()["events"]}
        completed = events["upload.completed"]
        assert completed["id"] == by_type["upload.completed"][0]
        assert completed["delivered"] is True
        assert [(a["attempt"], a["status"]) for a in completed["attempts"]] == [(1, 200)]
        owner = {"Authorization": f"Bearer {token}"}
        assert (
            httpx.get(f"{server.url}/v1/uploads/{upload_id}/events", headers=owner).status_code
            == 401
        )

        resend_url = f"{server.url}/v1/uploads/{upload_id}/events/{completed['id']}/resend"
        assert httpx.post(resend_url, headers=owner).status_code == 401
        resent = httpx.post(resend_url, headers=api)
        assert resent.status_code == 202 and resent.json()["attempt"] == 2
        wait_until(lambda: len(receiver.requests) >= 3, what="the resent webhook")
        harness.drain()
        again = receiver.requests[-1]
        assert again.headers["webhook-id"] == completed["id"]
        assert std_verify(again.headers, again.body) == by_type["upload.completed"][1]
        history = httpx.get(f"{server.url}/v1/uploads/{upload_id}/events", headers=api).json()
        attempts = next(e for e in history["events"] if e["id"] == completed["id"])["attempts"]
        assert [(a["attempt"], a["outcome"]) for a in attempts] == [
            (1, "delivered"),
            (2, "delivered"),
        ]

        missing = httpx.post(
            f"{server.url}/v1/uploads/{upload_id}/events/msg_nope/resend", headers=api
        )
        assert missing.status_code == 404
        assert httpx.get(f"{server.url}/v1/uploads/nope/events", headers=api).status_code == 404
    finally:
        server.stop()


def tus_upload(server_url: str, token: str, data: bytes, filename: str) -> str:
    created = httpx.post(
        f"{server_url}/files/",
        content=data,
        headers={
            "Authorization": f"Bearer {token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename " + base64.b64encode(filename.encode()).decode(),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert created.status_code == 201, created.text
    return created.headers["location"].rstrip("/").rsplit("/", 1)[-1]


@pytest.mark.slow
def test_real_worker_delivers_every_pipeline_event(
    receiver: Receiver, wh_settings: Settings, make_token, tmp_path: Path
) -> None:
    """`upload-service worker` as a process: the pipeline's events come out signed too."""
    env = settings_env(wh_settings) | {
        "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2",
        "WEBHOOK_TIMEOUT": "5",
        "TRANSCRIBE": "false",
        "PROCESS_MAX_RETRIES": "0",
    }
    receiver.script = [("status", 503, {"Retry-After": "0"})]  # one failure on the way
    server = LiveServer(wh_settings).start()
    with open(tmp_path / "worker.log", "wb") as worker_log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "upload_service.cli", "worker", "--processes", "1"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    try:
        token = make_token("user-1")
        video = make_video(tmp_path / "clip.mp4", seconds=1, size="160x90")
        good = tus_upload(server.url, token, video.read_bytes(), "clip.mp4")
        bad = tus_upload(server.url, token, b"this is not a video\n" * 50, "notes.mp4")

        def final_events() -> set[tuple[str, str]]:
            seen = set()
            for request in list(receiver.requests):
                payload = std_verify(request.headers, request.body)
                seen.add((payload["data"]["id"], payload["type"]))
            return {e for e in seen if e[1].startswith("media.")}

        wait_until(lambda: len(final_events()) >= 3, timeout=120, what="media.* webhooks")
        assert final_events() == {
            (good, "media.playable"),
            (good, "media.ready"),
            (bad, "media.failed"),
        }
        received = {
            (std_verify(r.headers, r.body)["data"]["id"], std_verify(r.headers, r.body)["type"])
            for r in receiver.requests
        }
        for upload_id in (good, bad):
            assert {(upload_id, "upload.created"), (upload_id, "upload.completed")} <= received
        ids = receiver.ids()
        assert len(ids) == len(set(ids)) + 1, "the one failed attempt was retried, same id"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.stop()


@pytest.mark.anyio
async def test_resend_without_webhook_url_is_refused(client: httpx.AsyncClient) -> None:
    api = {"Authorization": f"Bearer {API_KEY}"}
    answer = await client.post("/v1/uploads/x/events/msg_1/resend", headers=api)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "webhooks_disabled"
    assert (await client.get("/v1/uploads/x/events")).status_code == 401


def test_event_log_survives_and_reads_back_after_a_torn_line(wh_settings: Settings) -> None:
    log = WebhookLog(wh_settings.data_dir / "webhooks")
    event = {"id": "msg_1", "type": "upload.created", "timestamp": "t", "data": {"id": "u1"}}
    log.record_event(event)
    log.record_event(event)  # once only
    log.record_attempt("u1", {"event_id": "msg_1", "type": "upload.created", "attempt": 1})
    with open(log.path("u1"), "ab") as f:
        f.write(b'{"kind": "attempt", "event_')  # a crash mid-append
    [entry] = log.history("u1")
    assert entry["data"] == {"id": "u1"} and len(entry["attempts"]) == 1
    assert json.loads(log.path("u1").read_text().splitlines()[0])["kind"] == "event"
