"""Who may do what, from where: tokens, CORS, proxies, method override, error bodies."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from conftest import API_KEY, TOKEN_SECRET
from protocol_helpers import (
    OCTETS,
    Token,
    app_client,
    assert_error,
    create,
    patch,
    stored_ids,
    tus,
)

from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio


# -- tokens ---------------------------------------------------------------------------------


def bad_token(kind: str, make_token: Token) -> str | None:
    good = make_token()
    if kind == "missing":
        return None
    if kind == "malformed":
        return "not-a-jwt"
    if kind == "tampered signature":
        head, payload, signature = good.split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        return f"{head}.{payload}.{flipped}"
    if kind == "tampered payload":
        head, _, signature = good.split(".")
        forged = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, "x" * 32)
        return f"{head}.{forged.split('.')[1]}.{signature}"
    if kind == "wrong secret":
        return make_token(secret="another-secret-0123456789abcdef0123456789")
    if kind == "expired":
        return make_token(ttl=-10)
    if kind == "missing sub":
        return jwt.encode({"exp": int(time.time()) + 60}, TOKEN_SECRET, algorithm="HS256")
    if kind == "empty sub":
        return jwt.encode({"sub": "", "exp": int(time.time()) + 60}, TOKEN_SECRET)
    if kind == "missing exp":
        return jwt.encode({"sub": "user-1"}, TOKEN_SECRET, algorithm="HS256")
    if kind == "alg none":
        return jwt.encode({"sub": "user-1", "exp": int(time.time()) + 60}, None, algorithm="none")
    if kind == "bad max_bytes":
        return make_token(max_bytes=-1)
    if kind == "bad kinds":
        return jwt.encode(
            {"sub": "user-1", "exp": int(time.time()) + 60, "kinds": ["image"]}, TOKEN_SECRET
        )
    raise AssertionError(kind)


BAD_TOKENS = [
    "missing",
    "malformed",
    "tampered signature",
    "tampered payload",
    "wrong secret",
    "expired",
    "missing sub",
    "empty sub",
    "missing exp",
    "alg none",
    "bad max_bytes",
    "bad kinds",
]


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE", "GET"])
async def test_bad_tokens_are_401(
    client: httpx.AsyncClient, settings: Settings, make_token: Token, method: str, kind: str
) -> None:
    owner = make_token()
    upload_id = await create(client, owner, 3)
    await patch(client, owner, upload_id, 0, b"abc")  # finished, so GET would serve it
    token = bad_token(kind, make_token)
    headers = tus(token, Upload_Length="3", Upload_Offset="3", Content_Type=OCTETS)
    path = "/files/" if method == "POST" else f"/files/{upload_id}"
    response = await client.request(method, path, headers=headers)
    assert response.status_code == 401
    if method != "HEAD":
        assert_error(response, 401, "unauthorized")
    assert stored_ids(settings) == [upload_id]


@pytest.mark.parametrize("scheme", ["Basic", "Token", ""])
async def test_non_bearer_authorization_is_401(
    client: httpx.AsyncClient, make_token: Token, scheme: str
) -> None:
    headers = tus(None, Upload_Length="3", Authorization=f"{scheme} {make_token()}".strip())
    assert_error(await client.post("/files/", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
async def test_foreign_sub_gets_404(
    client: httpx.AsyncClient, make_token: Token, method: str
) -> None:
    owner = make_token(sub="owner")
    upload_id = await create(client, owner, 3)
    await patch(client, owner, upload_id, 0, b"ab")
    if method == "GET":
        await patch(client, owner, upload_id, 2, b"c")
    stranger = make_token(sub="stranger")
    headers = tus(stranger, Upload_Offset="2" if method != "GET" else "3", Content_Type=OCTETS)
    response = await client.request(method, f"/files/{upload_id}", headers=headers, content=b"c")
    assert response.status_code == 404
    if method != "HEAD":
        assert_error(response, 404, "not_found")
    # The owner's upload is untouched.
    head = await client.head(f"/files/{upload_id}", headers=tus(owner))
    assert head.status_code == 200
    assert head.headers["upload-offset"] == ("3" if method == "GET" else "2")


# -- CORS, proxies, method override --------------------------------------------------------

TUS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Concat",
    "X-HTTP-Method-Override",
    "X-Request-ID",
]
TUS_RESPONSE_HEADERS = [
    "Location",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
]


@pytest.mark.parametrize("method", ["POST", "PATCH", "HEAD", "DELETE"])
async def test_cors_preflight_allows_the_tus_headers(
    client: httpx.AsyncClient, method: str
) -> None:
    response = await client.options(
        "/files/some-id" if method != "POST" else "/files/",
        headers={
            "Origin": "https://course.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ",".join(h.lower() for h in TUS_REQUEST_HEADERS),
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://course.example")
    assert method in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {h.lower() for h in TUS_REQUEST_HEADERS} <= allowed


async def test_cors_exposes_the_tus_headers(client: httpx.AsyncClient, make_token: Token) -> None:
    response = await client.post(
        "/files/",
        headers=tus(make_token(), Upload_Length="3", Origin="https://course.example"),
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] in ("*", "https://course.example")
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {h.lower() for h in TUS_RESPONSE_HEADERS} <= exposed
    # Errors carry CORS headers too, or a browser could not read them.
    error = await client.post("/files/", headers=tus(None, Origin="https://course.example"))
    assert error.status_code == 401
    assert "access-control-allow-origin" in error.headers


@pytest.mark.parametrize(
    ("origin", "allowed"), [("https://course.example", True), ("https://evil.example", False)]
)
async def test_cors_origins_can_be_restricted(
    settings: Settings, origin: str, allowed: bool
) -> None:
    restricted = settings.with_changes(cors_origins=("https://course.example",))
    async with app_client(restricted) as c:
        response = await c.options(
            "/files/",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "tus-resumable,upload-length",
            },
        )
    assert (response.status_code == 200) is allowed
    assert (response.headers.get("access-control-allow-origin") == origin) is allowed


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.com"}


@pytest.mark.parametrize(
    ("behind_proxy", "extra", "expected"),
    [
        (False, FORWARDED, "http://testserver/files/"),
        (False, {}, "http://testserver/files/"),
        (True, FORWARDED, "https://uploads.example.com/files/"),
        (True, {"X-Forwarded-Proto": "https, http"}, "https://testserver/files/"),
        (True, {}, "http://testserver/files/"),
    ],
)
async def test_forwarded_headers_only_behind_a_proxy(
    settings: Settings, make_token: Token, behind_proxy: bool, extra: dict[str, str], expected: str
) -> None:
    async with app_client(settings.with_changes(behind_proxy=behind_proxy)) as c:
        response = await c.post("/files/", headers=tus(make_token(), Upload_Length="1") | extra)
    assert response.status_code == 201
    location = response.headers["location"]
    assert location.startswith(expected)
    assert len(location) > len(expected)


async def test_method_override_tunnels_patch_and_delete(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token()
    upload_id = await create(client, token, 6)
    path = f"/files/{upload_id}"
    headers = tus(token, Upload_Offset="0", Content_Type=OCTETS, X_HTTP_Method_Override="PATCH")
    response = await client.post(path, headers=headers, content=b"abc")
    assert response.status_code == 204 and response.headers["upload-offset"] == "3"
    head = await client.post(path, headers=tus(token, X_HTTP_Method_Override="HEAD"))
    assert head.headers["upload-offset"] == "3"
    gone = await client.post(path, headers=tus(token, X_HTTP_Method_Override="delete"))
    assert gone.status_code == 204
    assert (await client.head(path, headers=tus(token))).status_code == 404


# -- error bodies -----------------------------------------------------------------------------


async def test_every_error_has_a_code_and_message(
    client: httpx.AsyncClient, make_token: Token
) -> None:
    token = make_token()
    upload_id = await create(client, token, 2)
    requests: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/files/", tus(token), None),
        ("POST", "/files/", tus(token, Upload_Length="x"), None),
        ("PATCH", f"/files/{upload_id}", tus(token, Upload_Offset="0"), b"a"),
        ("PATCH", f"/files/{upload_id}", tus(token, Upload_Offset="1", Content_Type=OCTETS), b"a"),
        ("DELETE", "/files/nope", tus(token), None),
        ("GET", "/files/nope", {"Authorization": f"Bearer {token}"}, None),
        ("GET", "/v1/uploads/nope", {"Authorization": f"Bearer {API_KEY}"}, None),
    ]
    codes = set()
    for method, path, headers, body in requests:
        response = await client.request(method, path, headers=headers, content=body)
        assert response.status_code >= 400
        assert response.headers["content-type"].startswith("application/json")
        assert_error(response, response.status_code)
        codes.add(response.json()["error"]["code"])
    assert {"invalid_length", "unsupported_content_type", "mismatched_offset", "not_found"} <= codes
