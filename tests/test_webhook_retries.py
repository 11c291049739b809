"""Webhook delivery and retries: a real worker posting to a real HTTP receiver on loopback.

The receiver is a threading `http.server` scripted to fail, hang or answer 410;
the worker is an in-process Dramatiq worker on a private Redis database, and
hours of the retry schedule pass on Dramatiq's stopped clock. Signatures are
checked with the `standardwebhooks` package.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from conftest import RedisServer
from dramatiq_helpers import DramatiqClock
from webhook_helpers import Harness, Receiver, start_harness, std_verify, webhook_settings

from upload_service.core.jobs import DramatiqJobQueue
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path


@pytest.fixture
def webhooks() -> ModuleType:
    # Imported when used, not at collection: importing declares the actor on the
    # current broker, which should be the one `processors.actors` sets up.
    return importlib.import_module("processors.webhooks")


@pytest.fixture
def wh_settings(settings: Settings, redis_server: RedisServer, receiver: Receiver) -> Settings:
    return webhook_settings(settings, redis_server.port, receiver)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> DramatiqClock:
    return DramatiqClock(monkeypatch)


@pytest.fixture
def harness(wh_settings: Settings, receiver: Receiver) -> Iterator[Harness]:
    yield from start_harness(wh_settings, receiver)


# --- the Retry-After header -------------------------------------------------------------


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
