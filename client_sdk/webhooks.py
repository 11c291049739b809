"""Verifying the service's webhooks on the receiving side (Standard Webhooks).

    from client_sdk import verify_webhook, WebhookVerificationError

    try:
        event = verify_webhook(WEBHOOK_SECRET, request.headers, raw_body)
    except WebhookVerificationError as exc:
        return 400, str(exc)

Pass the raw body bytes exactly as received: re-serialised JSON will not verify.

Errors, all raised by `verify_webhook`:

    WebhookVerificationError        base class; catch this one
    ├── MissingHeadersError         webhook-id, -timestamp or -signature absent
    ├── InvalidTimestampError       not a Unix time, or more than 5 minutes off
    ├── InvalidSignatureError       no v1 signature matches the body (tampered, wrong secret)
    └── InvalidPayloadError         signed, but not a JSON object

A bad secret (not `whsec_<base64>`) raises `ValueError`: that is a configuration
mistake, not a hostile request.

Self-contained on purpose: the SDK imports neither the server nor the workers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TOLERANCE",
    "InvalidPayloadError",
    "InvalidSignatureError",
    "InvalidTimestampError",
    "MissingHeadersError",
    "WebhookVerificationError",
    "sign_webhook",
    "verify_webhook",
]

TOLERANCE = 5 * 60  # seconds a timestamp may be off, either way (replay protection)


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh event from the upload service."""


class MissingHeadersError(WebhookVerificationError):
    pass


class InvalidTimestampError(WebhookVerificationError):
    pass


class InvalidSignatureError(WebhookVerificationError):
    pass


class InvalidPayloadError(WebhookVerificationError):
    pass


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the webhook secret must look like whsec_<base64>") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign_webhook(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for a body: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    )


def verify_webhook(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Checks a webhook's signature and freshness; returns the parsed event.

    The event is `{"type", "timestamp", "data"}`; its id is `headers["webhook-id"]`:
    use that to drop duplicates (deliveries are at least once).
    """
    key = _key(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if missing or msg_id is None or timestamp is None or signatures is None:
        raise MissingHeadersError("missing webhook headers: " + ", ".join(missing))
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise InvalidTimestampError(
            f"webhook-timestamp is not a Unix time: {timestamp!r}"
        ) from None
    skew = (now if now is not None else time.time()) - sent_at
    if abs(skew) > tolerance:
        direction = "old" if skew > 0 else "far in the future"
        raise InvalidTimestampError(
            f"webhook-timestamp is {abs(skew):.0f} s {direction}: more than "
            f"{tolerance:.0f} s off (replayed, or the clocks disagree)"
        )
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = sign_webhook(key, msg_id, sent_at, raw).partition(",")[2]
    # The header may carry several space-separated signatures (key rotation).
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            break
    else:
        raise InvalidSignatureError(
            "no webhook-signature matches the body: wrong secret, or the body was altered"
        )
    try:
        event = json.loads(raw)
    except ValueError:
        raise InvalidPayloadError("the signed body is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidPayloadError("the signed body is not a JSON object")
    return event
