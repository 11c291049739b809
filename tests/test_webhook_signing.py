"""Webhook signatures, both ways, against the `standardwebhooks` package.

What the worker signs, `standardwebhooks` (an independent implementation of
the specification) verifies; what `standardwebhooks` signs, the SDK's
`verify_webhook` accepts; tampered, stale and incomplete deliveries are refused.
"""

from __future__ import annotations

import base64
import importlib
import time
from datetime import UTC, datetime
from types import ModuleType

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as StdVerificationError
from webhook_helpers import SECRET, std_verify

from client_sdk import (
    InvalidSignatureError,
    InvalidTimestampError,
    MissingHeadersError,
    WebhookVerificationError,
    verify_webhook,
)

pytestmark = pytest.mark.one_path


@pytest.fixture
def webhooks() -> ModuleType:
    # Imported when used, not at collection: importing declares the actor on the
    # current broker, which should be the one `processors.actors` sets up.
    return importlib.import_module("processors.webhooks")


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
