"""Webhook delivery: the Dramatiq actor `deliver_webhook` and the plain code it wraps.

The server only enqueues events (`upload_service.core.events.emit`); this module POSTs
them to `WEBHOOK_URL`, signed as Standard Webhooks says, and keeps trying.

Retries are Dramatiq's (its Retries middleware): a failed attempt raises
`dramatiq.Retry` with the next delay of `WEBHOOK_RETRY_SCHEDULE` (or the
receiver's `Retry-After` on a 429/503), and Dramatiq re-enqueues the very same
message with that delay, so every attempt carries the same event id as its
`webhook-id` and receivers can drop duplicates. The attempt number is the
message's retry count (`CurrentMessage`) added to where the message started.
A 410 answer stops the retries, and so does the end of the schedule: the
attempt then returns normally. Every attempt is recorded in the webhook log
(`upload_service.core.webhook_log`).

Importing this module declares the actor on the current broker, so import it
after `processors.broker.setup_broker()` (as `processors.actors` does).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import dramatiq
import httpx
from dramatiq.middleware import CurrentMessage

from upload_service.core.jobs import WEBHOOK_QUEUE
from upload_service.core.logs import log_event
from upload_service.core.media_signing import MissingSigningKey
from upload_service.core.playback import PlaybackURLs
from upload_service.core.settings import Settings
from upload_service.core.state import DeliveryLog, shared_state
from upload_service.core.status import iso

log = logging.getLogger("processors.webhooks")

# Dramatiq refuses delays of 7 days or more; a Retry-After beyond a day is
# more likely a mistake than a plan, so it is capped.
MAX_DELAY = 24 * 3600.0
ERROR_SNIPPET = 200
USER_AGENT = "media-upload-service-webhooks/1"
# Dramatiq's limit for one attempt: well above WEBHOOK_TIMEOUT (15 s by default).
TIME_LIMIT_MS = 120_000

_settings: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Use these settings instead of the environment's (tests, embedding)."""
    global _settings
    _settings = settings


def current_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def webhook_log(settings: Settings) -> DeliveryLog:
    return shared_state(settings).webhooks


# --- signing (Standard Webhooks) -------------------------------------------------


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64 part after `whsec_`."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise ValueError("WEBHOOK_SECRET must be whsec_<base64>") from None
    if not key:
        raise ValueError("WEBHOOK_SECRET is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def event_body(event: dict[str, Any]) -> bytes:
    """The POSTed body: the event without its id (that travels as `webhook-id`)."""
    payload = {"type": event["type"], "timestamp": event["timestamp"], "data": event["data"]}
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


# --- one attempt -------------------------------------------------------------------


@dataclass
class Result:
    status: int | None
    error: str | None
    duration_ms: float
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from now: `Retry-After` is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


async def _post(url: str, headers: dict[str, str], body: bytes, limit: float) -> Result:
    started = time.monotonic()

    def elapsed() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        # One deadline for the whole attempt: httpx's own timeouts are per read,
        # so a receiver trickling bytes could otherwise hold a worker for ever.
        async with asyncio.timeout(limit):
            async with (
                httpx.AsyncClient(timeout=limit, follow_redirects=False) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                snippet = b""
                async for chunk in response.aiter_bytes():
                    snippet += chunk
                    if len(snippet) >= ERROR_SNIPPET:
                        break
    except (TimeoutError, httpx.TimeoutException):
        return Result(None, f"timed out after {limit:g} s", elapsed())
    except httpx.HTTPError as exc:
        detail = str(exc)
        return Result(None, type(exc).__name__ + (f": {detail}" if detail else ""), elapsed())
    result = Result(response.status_code, None, elapsed())
    if not result.ok:
        text = snippet[:ERROR_SNIPPET].decode(errors="replace").strip()
        result.error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
    if response.status_code in (429, 503):
        result.retry_after = parse_retry_after(response.headers.get("retry-after"))
    return result


def with_playback_urls(settings: Settings, event: dict[str, Any]) -> dict[str, Any]:
    """The event with its record's media URLs signed (MEDIA_ACCESS=signed).

    Signed per attempt, not when the event was emitted: a retry hours later
    carries URLs that still work, and the stored event (the webhook log, what
    a resend sends) keeps plain URLs like the status record.
    """
    return {**event, "data": PlaybackURLs.from_settings(settings).record(event["data"])}


def attempt_delivery(settings: Settings, event: dict[str, Any]) -> Result:
    if not settings.webhook_url:
        return Result(None, "WEBHOOK_URL is not set on this worker", 0.0)
    if not settings.webhook_secret:
        # Never send unsigned: receivers must be able to trust every event.
        return Result(None, "WEBHOOK_SECRET is not set on this worker", 0.0)
    try:
        event = with_playback_urls(settings, event)
    except MissingSigningKey as exc:
        return Result(None, str(exc), 0.0)
    body = event_body(event)
    try:
        headers = signed_headers(settings.webhook_secret, event["id"], body)
    except ValueError as exc:
        return Result(None, str(exc), 0.0)
    # Never longer than the actor's time limit, or Dramatiq would kill the attempt.
    limit = min(settings.webhook_timeout, TIME_LIMIT_MS / 1000 - 10)
    return asyncio.run(_post(settings.webhook_url, headers, body, limit))


def next_delay(result: Result, retry: int, schedule: tuple[float, ...]) -> tuple[str, float | None]:
    """What happens after an attempt: (outcome, seconds until the next attempt)."""
    if result.ok:
        return "delivered", None
    if result.status == 410:
        return "stopped", None  # the receiver says: never again
    if retry >= len(schedule):
        return "gave_up", None
    delay = schedule[retry]
    if result.retry_after is not None:
        delay = result.retry_after
    return "retrying", min(max(delay, 0.0), MAX_DELAY)


# --- the actor ---------------------------------------------------------------------


def deliver(event: dict[str, Any], attempt: int = 1, retry: int = 0) -> str:
    """One attempt of one event, logged; returns the outcome.

    `attempt` numbers it for the log; `retry` is its place in the schedule (0: the
    first try of an event, or of a resend). When another attempt should follow,
    raises `dramatiq.Retry` with its delay, for Dramatiq's Retries middleware.
    """
    settings = current_settings()
    history = webhook_log(settings)
    upload_id = event["data"]["id"]
    at = iso()
    try:
        history.record_event(event)
    # The log is for humans; delivery matters more. OSError: a full disk; Exception:
    # PostgreSQL's errors as well (psycopg is imported only where it is configured).
    except Exception as exc:
        log_event(log, "webhook.log_failed", logging.ERROR, error=str(exc))
    result = attempt_delivery(settings, event)
    outcome, delay = next_delay(result, retry, settings.webhook_schedule)
    entry = {
        "event_id": event["id"],
        "type": event["type"],
        "attempt": attempt,
        "status": result.status,
        "duration_ms": result.duration_ms,
        "error": result.error,
        "at": at,
        "outcome": outcome,
        "retry_in": delay,
    }
    try:
        history.record_attempt(upload_id, entry)
    except Exception as exc:
        log_event(log, "webhook.log_failed", logging.ERROR, error=str(exc))
    level = logging.INFO if outcome == "delivered" else logging.WARNING
    log_event(log, f"webhook.{outcome}", level, upload_id=upload_id, **entry)
    if delay is not None:
        raise dramatiq.Retry(f"webhook {outcome}: {result.error}", delay=int(delay * 1000))
    return outcome


def retries_so_far() -> int:
    """How often Dramatiq has retried the message being processed (0 outside a worker)."""
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


def should_retry(retries: int, exception: BaseException) -> bool:
    """Dramatiq's `retry_when`: our own `Retry` always (the schedule was consulted
    before raising it); any other failure (a bug, the time limit) as many times
    as the schedule has delays, with Dramatiq's backoff: at least once holds.

    Not `max_retries`: the schedule is a setting, read where the worker runs,
    while actor options are fixed when the actor is declared."""
    if isinstance(exception, dramatiq.Retry):
        return True
    return retries < len(current_settings().webhook_schedule)


@dramatiq.actor(
    actor_name="deliver_webhook",
    queue_name=WEBHOOK_QUEUE,
    retry_when=should_retry,
    # Only for failures that are not an answer from the receiver (see should_retry).
    min_backoff=5_000,
    max_backoff=int(MAX_DELAY * 1000),
    time_limit=TIME_LIMIT_MS,
)
def deliver_webhook(event: dict[str, Any], attempt: int = 1, retry: int = 0) -> None:
    """`attempt`, `retry`: where this message starts. The server sends (event) for a new
    event and (event, next attempt number, 0) for a resend, whose schedule starts afresh."""
    done = retries_so_far()
    deliver(event, attempt + done, retry + done)
