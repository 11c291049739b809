"""Signed media URLs (MEDIA_ACCESS=signed): `?exp=<unix>&sig=<base64url HMAC-SHA256>`.

The signature covers the upload id and the expiry, not the file: one query
string opens every file of one upload until it expires, so the server can
append the query it was given to every URI of a playlist, and hls.js or
Safari fetch variants, segments and subtitles with it unchanged.

The expiry is rounded up to a whole window (an hour, or the TTL when that is
shorter): every URL handed out within one window is the same, so a status
body, and its ETag, stay the same between two polls. A URL is valid for at
least the TTL and at most the TTL plus a window.

The key is MEDIA_SIGNING_KEY, or else derived from UPLOAD_TOKEN_SECRET with a
fixed label, so a media signature is never also a valid token signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

from upload_service.core.errors import BadSignature, UrlExpired
from upload_service.core.settings import Settings

WINDOW = 3600
KEY_LABEL = b"media-upload-service/media-url-signing-key/v1"


class MissingSigningKey(RuntimeError):
    """MEDIA_ACCESS=signed, with neither MEDIA_SIGNING_KEY nor UPLOAD_TOKEN_SECRET."""


def signing_key(settings: Settings) -> bytes:
    if settings.media_signing_key:
        return settings.media_signing_key.encode()
    if settings.token_secret:
        return hmac.new(settings.token_secret.encode(), KEY_LABEL, hashlib.sha256).digest()
    raise MissingSigningKey(
        "MEDIA_ACCESS=signed needs MEDIA_SIGNING_KEY or UPLOAD_TOKEN_SECRET to sign media URLs"
    )


def media_signer(settings: Settings, clock: Callable[[], float] = time.time) -> MediaSigner | None:
    """The signer MEDIA_ACCESS asks for; None when media are public."""
    if settings.media_access != "signed":
        return None
    return MediaSigner(signing_key(settings), settings.media_url_ttl, clock)


class MediaSigner:
    def __init__(self, key: bytes, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.ttl = ttl
        self.window = max(1, min(WINDOW, ttl))
        self.clock = clock  # the wall clock expiries are counted by

    def expiry(self, now: float | None = None) -> int:
        at_least = int(self.clock() if now is None else now) + self.ttl
        return -(-at_least // self.window) * self.window

    def signature(self, upload_id: str, exp: int) -> str:
        digest = hmac.new(self.key, f"{upload_id}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def query(self, upload_id: str, now: float | None = None) -> str:
        exp = self.expiry(now)
        return f"exp={exp}&sig={self.signature(upload_id, exp)}"

    def verify(
        self, upload_id: str, exp: str | None, sig: str | None, now: float | None = None
    ) -> int:
        """The expiry of a valid signature; BadSignature or UrlExpired otherwise."""
        if not exp or not sig or not exp.isascii() or not exp.isdigit() or len(exp) > 12:
            raise BadSignature()
        expected = self.signature(upload_id, int(exp))
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
            raise BadSignature()
        if int(exp) <= (self.clock() if now is None else now):
            raise UrlExpired()
        return int(exp)
