"""Upload tokens and the API key, below HTTP: what passes, what is refused, and why."""

from __future__ import annotations

import time
import warnings
from typing import Any

import jwt
import pytest
from conftest import TOKEN_SECRET

from client_sdk import mint_upload_token as mint_token
from upload_service.core.errors import Unauthorized
from upload_service.core.tokens import TokenClaims, bearer, decode_token, is_api_key


def encode(claims: dict[str, Any], secret: str = TOKEN_SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # HS512 with our 44-byte secret: that is the point
        warnings.simplefilter("ignore")
        return jwt.encode(claims, secret, algorithm=algorithm)


def later(seconds: int = 60) -> int:
    return int(time.time()) + seconds


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_minted_token_round_trips() -> None:
    token = mint_token(
        TOKEN_SECRET, "user-42", ttl=60, max_bytes=1000, kinds=["video"], meta={"course_id": 12}
    )
    claims = decode_token(token, TOKEN_SECRET)
    assert claims.sub == "user-42" and claims.exp > time.time()
    assert (claims.max_bytes, claims.kinds, claims.meta) == (1000, ["video"], {"course_id": 12})


def test_optional_claims_default() -> None:
    claims = decode_token(encode({"sub": "u", "exp": later()}), TOKEN_SECRET)
    assert claims == TokenClaims(sub="u", exp=claims.exp, max_bytes=None, kinds=None, meta={})


BAD: list[tuple[str, Any]] = [
    ("missing", None),
    ("empty", ""),
    ("not a jwt", "abc.def"),
    ("garbage segments", "a.b.c"),
    ("wrong secret", encode({"sub": "u", "exp": later()}, secret="x" * 40)),
    ("expired", encode({"sub": "u", "exp": later(-5)})),
    ("no exp", encode({"sub": "u"})),
    ("no sub", encode({"exp": later()})),
    ("empty sub", encode({"sub": "", "exp": later()})),
    ("numeric sub", encode({"sub": 42, "exp": later()})),
    ("not yet valid", encode({"sub": "u", "exp": later(), "nbf": later(30)})),
    ("alg none", jwt.encode({"sub": "u", "exp": later()}, None, algorithm="none")),
    ("HS512", encode({"sub": "u", "exp": later()}, algorithm="HS512")),
    ("negative max_bytes", encode({"sub": "u", "exp": later(), "max_bytes": -1})),
    ("string max_bytes", encode({"sub": "u", "exp": later(), "max_bytes": "10"})),
    ("float max_bytes", encode({"sub": "u", "exp": later(), "max_bytes": 1.5})),
    ("unknown kind", encode({"sub": "u", "exp": later(), "kinds": ["image"]})),
    ("empty kinds", encode({"sub": "u", "exp": later(), "kinds": []})),
    ("kinds not a list", encode({"sub": "u", "exp": later(), "kinds": "video"})),
    ("meta not an object", encode({"sub": "u", "exp": later(), "meta": [1, 2]})),
]


@pytest.mark.parametrize("token", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_tokens_are_unauthorized(token: str | None) -> None:
    with pytest.raises(Unauthorized) as raised:
        decode_token(token, TOKEN_SECRET)
    assert raised.value.status == 401 and raised.value.code == "unauthorized"
    assert raised.value.message


def test_tampered_payload_is_refused() -> None:
    head, _, signature = mint_token(TOKEN_SECRET, "user-1").split(".")
    forged_payload = encode({"sub": "admin", "exp": later()}, secret="y" * 40).split(".")[1]
    with pytest.raises(Unauthorized):
        decode_token(f"{head}.{forged_payload}.{signature}", TOKEN_SECRET)


def test_expired_says_so() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(encode({"sub": "u", "exp": later(-5)}), TOKEN_SECRET)


def test_a_token_verified_once_is_still_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exp = later(30)
    token = encode({"sub": "u", "exp": exp})
    assert decode_token(token, TOKEN_SECRET).sub == "u"  # verified, and remembered
    monkeypatch.setattr(time, "time", lambda: exp + 1.0)
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(token, TOKEN_SECRET)


def test_a_token_verified_under_one_secret_is_not_accepted_under_another() -> None:
    token = encode({"sub": "u", "exp": later()})
    assert decode_token(token, TOKEN_SECRET).sub == "u"
    with pytest.raises(Unauthorized, match="invalid upload token"):
        decode_token(token, "another-secret-of-enough-length-for-hs256!!")


@pytest.mark.parametrize(
    ("token", "key", "expected"),
    [
        ("k3y", "k3y", True),
        ("k3y", "k3z", False),
        ("k3y", None, False),
        (None, "k3y", False),
        ("", "", False),
        (None, None, False),
        ("k3y-longer", "k3y", False),
    ],
)
def test_is_api_key(token: str | None, key: str | None, expected: bool) -> None:
    assert is_api_key(token, key) is expected
