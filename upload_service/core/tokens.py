"""Upload tokens (JWT HS256, minted by the backend) and the backend's API key."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from upload_service.core.errors import ServiceError, Unauthorized

KINDS = ("video", "audio")


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    exp: int
    max_bytes: int | None = None
    kinds: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# Tokens already verified, so that the many PATCHes and HEADs of one upload check
# the signature once: PyJWT's decode showed in the event loop's profile under many
# concurrent uploads. Keyed by token and secret; expiry is checked every time.
_verified: OrderedDict[tuple[str, str], TokenClaims] = OrderedDict()
VERIFIED_MAX = 4096


def decode_token(token: str | None, secret: str) -> TokenClaims:
    if not token:
        raise Unauthorized("missing upload token: send Authorization: Bearer <token>")
    key = (token, secret)
    claims = _verified.get(key)
    if claims is None:
        claims = _verify(token, secret)
        _verified[key] = claims
        if len(_verified) > VERIFIED_MAX:
            _verified.popitem(last=False)
    elif claims.exp <= time.time():  # PyJWT's rule, without leeway
        _verified.pop(key, None)
        raise Unauthorized("upload token expired")
    return claims


def _verify(token: str, secret: str) -> TokenClaims:
    if not looks_like_jwt(token):  # PyJWT would say "Not enough segments"
        raise Unauthorized("invalid upload token: not a JWT (three dot-separated parts)")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("upload token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid upload token: {exc}") from None
    sub, max_bytes, kinds, meta = (
        claims["sub"],
        claims.get("max_bytes"),
        claims.get("kinds"),
        claims.get("meta") or {},
    )
    exp = claims["exp"]
    # PyJWT accepts "1700000000" (it calls int() on it); the contract says Unix seconds,
    # a JSON number, and a bool is no number either.
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Unauthorized("invalid upload token: exp must be a number (Unix seconds)")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("invalid upload token: sub must be a non-empty string")
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
        raise Unauthorized("invalid upload token: max_bytes must be a non-negative integer")
    if kinds is not None and (
        not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds)
    ):
        raise Unauthorized("invalid upload token: kinds must be a list of 'video', 'audio'")
    if not isinstance(meta, dict):
        raise Unauthorized("invalid upload token: meta must be a JSON object")
    return TokenClaims(sub=sub, exp=int(exp), max_bytes=max_bytes, kinds=kinds, meta=meta)


def is_api_key(token: str | None, api_key: str | None) -> bool:
    return bool(token and api_key and hmac.compare_digest(token.encode(), api_key.encode()))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def wrong_api_key(api_key: str | None) -> ServiceError:
    if not api_key:
        return Unauthorized("this server has no API key: UPLOAD_API_KEY is not set")
    return Unauthorized("wrong API key: it does not match the server's UPLOAD_API_KEY")


def api_key_or_owner(token: str | None, api_key: str | None, secret: str) -> str | None:
    """None for the backend (the API key), else the upload token's `sub`.

    Something that is neither the key nor shaped like a token was meant as the key:
    the refusal says the key is wrong rather than how the token failed to parse.
    """
    if is_api_key(token, api_key):
        return None
    if token is None:
        raise Unauthorized("send Authorization: Bearer <API key or upload token>")
    if not looks_like_jwt(token):
        raise wrong_api_key(api_key)
    return decode_token(token, secret).sub
