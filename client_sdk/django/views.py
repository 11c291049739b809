"""The two endpoints: `token/` for the logged-in user, `webhooks/` for the service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .._tokens import mint_upload_token
from ..webhooks import InvalidPayloadError, WebhookVerificationError, verify_webhook
from . import conf
from .events import handle_event

CLAIM_ARGUMENTS = frozenset({"ttl", "meta", "max_bytes", "kinds"})


def _error(status: int, code: str, message: str) -> JsonResponse:
    # The service's own error body, so one client-side handler reads both.
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@require_POST
def token(request: HttpRequest) -> JsonResponse:
    """An upload token for the logged-in user: `{"token", "endpoint", "expires_at"}`.

    The token's `sub` is the user's primary key. `MEDIA_UPLOAD["TOKEN_CLAIMS"]`, a
    callable `(request) -> dict`, may add `meta` (echoed in status and webhooks,
    e.g. `{"course_id": 12}`), `max_bytes`, `kinds` and `ttl`, and may raise
    PermissionDenied to refuse this user (403). Session-authenticated, so Django's
    CSRF check applies: send the `X-CSRFToken` header from the page.
    """
    if not request.user.is_authenticated:
        return _error(403, "login_required", "log in first: upload tokens are for users")
    claims: dict[str, Any] = {"ttl": conf.token_ttl()}
    hook = conf.token_claims_hook()
    if hook is not None:
        try:
            claims.update(hook(request) or {})
        except PermissionDenied as exc:
            return _error(403, "forbidden", str(exc) or "you may not upload here")
    unknown = set(claims) - CLAIM_ARGUMENTS
    if unknown:
        raise ImproperlyConfigured(
            f"TOKEN_CLAIMS returned {sorted(unknown)}; it may return {sorted(CLAIM_ARGUMENTS)}"
        )
    raw = mint_upload_token(conf.required("TOKEN_SECRET"), str(request.user.pk), **claims)
    expires = jwt.decode(raw, options={"verify_signature": False})["exp"]
    body = {
        "token": raw,
        "endpoint": conf.server_url() + "/files/",
        "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return JsonResponse(body, headers={"Cache-Control": "no-store"})


@csrf_exempt  # the service is no browser: the signature is what authenticates it
@require_POST
def webhooks(request: HttpRequest) -> JsonResponse:
    """A signed event from the service: verified, recorded once, signalled once.

    400 for a missing or wrong signature, a stale timestamp or a body that is not
    an event (the service retries, so a fixed secret lets the events through);
    200 for a new event and for one seen before (`"duplicate": true`).
    """
    try:
        event = verify_webhook(conf.required("WEBHOOK_SECRET"), request.headers, request.body)
        _check_event(event)
    except WebhookVerificationError as exc:
        return _error(400, "invalid_webhook", str(exc))
    first = handle_event(event, request.headers["webhook-id"])
    return JsonResponse({"received": event["type"], "duplicate": not first})


def _check_event(event: dict[str, Any]) -> None:
    data = event.get("data")
    if not isinstance(event.get("type"), str) or not isinstance(data, dict):
        raise InvalidPayloadError('an event is {"type", "timestamp", "data"}')
    if not isinstance(data.get("id"), str) or not data["id"]:
        raise InvalidPayloadError("the event's data has no upload id")
