"""Minting upload tokens, as the main backend does (JWT HS256, claims in docs/api.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

KINDS = ("video", "audio")


def mint_upload_token(
    secret: str,
    sub: str,
    ttl: int = 3600,
    max_bytes: int | None = None,
    kinds: Iterable[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """A token letting user `sub` upload for `ttl` seconds.

    `max_bytes` caps the file size below the server's limit, `kinds` restricts the
    media kinds (`video`, `audio`), and `meta` is echoed back in status and webhooks.
    """
    if not sub:
        raise ValueError("sub must be a non-empty user id")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(sub), "iat": now, "exp": now + int(ttl)}
    if max_bytes is not None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be non-negative")
        claims["max_bytes"] = int(max_bytes)
    if kinds is not None:
        kind_list = list(kinds)
        unknown = [k for k in kind_list if k not in KINDS]
        if not kind_list or unknown:
            raise ValueError(f"kinds must be a non-empty list of {KINDS}, got {kind_list}")
        claims["kinds"] = kind_list
    if meta:
        claims["meta"] = dict(meta)
    return jwt.encode(claims, secret, algorithm="HS256")
