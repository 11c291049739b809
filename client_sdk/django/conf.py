"""The app's settings: one dict, `settings.MEDIA_UPLOAD`, read when used.

    MEDIA_UPLOAD = {
        "SERVER_URL": "https://upload.example.com",  # the service, as browsers reach it
        "TOKEN_SECRET": "...",     # the service's UPLOAD_TOKEN_SECRET
        "API_KEY": "...",          # the service's UPLOAD_API_KEY (status API)
        "WEBHOOK_SECRET": "whsec_...",  # the service's WEBHOOK_SECRET
        # optional:
        "TOKEN_TTL": 3600,         # seconds an upload token is valid
        "TOKEN_CLAIMS": "courses.uploads.token_claims",  # hook, see views.token
    }

Read on every use rather than once at import, so `override_settings` in a
project's tests works; each view asks only for the keys it needs, and a missing
one is an ImproperlyConfigured error that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

DEFAULT_TOKEN_TTL = 3600


def _settings() -> dict[str, Any]:
    value = getattr(settings, "MEDIA_UPLOAD", None)
    if not isinstance(value, dict):
        raise ImproperlyConfigured(
            "settings.MEDIA_UPLOAD must be a dict with SERVER_URL, TOKEN_SECRET, API_KEY "
            "and WEBHOOK_SECRET"
        )
    return value


def required(name: str) -> str:
    value = _settings().get(name)
    if not value or not isinstance(value, str):
        raise ImproperlyConfigured(f'settings.MEDIA_UPLOAD["{name}"] is not set')
    return value


def server_url() -> str:
    return required("SERVER_URL").rstrip("/")


def token_ttl() -> int:
    ttl = _settings().get("TOKEN_TTL", DEFAULT_TOKEN_TTL)
    if not isinstance(ttl, int) or ttl <= 0:
        raise ImproperlyConfigured('settings.MEDIA_UPLOAD["TOKEN_TTL"] must be a positive int')
    return ttl


def token_claims_hook() -> Callable[..., dict[str, Any]] | None:
    hook = _settings().get("TOKEN_CLAIMS")
    if hook is None or callable(hook):
        return hook
    if isinstance(hook, str):
        return import_string(hook)
    raise ImproperlyConfigured(
        'settings.MEDIA_UPLOAD["TOKEN_CLAIMS"] must be a callable or its dotted path'
    )
