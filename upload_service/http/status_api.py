"""The backend's status API, health checks and metrics."""

from __future__ import annotations

import json
import os
import secrets
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from upload_service.core.diskspace import free_bytes
from upload_service.core.errors import BadRequest, NotFound, Unauthorized
from upload_service.core.ids import is_safe_id
from upload_service.core.metrics import exposition
from upload_service.core.playback import PlaybackURLs
from upload_service.core.status import encode, etag_of
from upload_service.core.threads import run_blocking, run_read
from upload_service.core.tokens import api_key_or_owner, bearer, is_api_key, wrong_api_key
from upload_service.http.listing import LISTING_PARAMS, list_query, page_body

if TYPE_CHECKING:
    from upload_service.http.services import Services

MAX_BATCH = 100


class StatusAPI:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Media URLs are signed as they leave, never stored signed (see playback).
        self.playback = PlaybackURLs.from_settings(services.settings, services.clock)

    def _caller(self, request: Request) -> str | None:
        """None for the backend (API key), else the token's `sub`."""
        settings = self.services.settings
        assert settings.token_secret is not None
        token = bearer(request.headers.get("authorization"))
        return api_key_or_owner(token, settings.api_key, settings.token_secret)

    def _cached(self, request: Request, body: bytes) -> Response:
        etag = etag_of(body)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if none_match(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def one(self, request: Request) -> Response:
        caller = self._caller(request)
        upload_id = request.path_params["upload_id"]
        if not is_safe_id(upload_id):
            raise NotFound("no such upload")
        body = await self.services.reader.get_raw(upload_id)
        if body is None or (caller is not None and json.loads(body)["owner"] != caller):
            raise NotFound(f"upload {upload_id} not found")
        return self._cached(request, self.playback.body(body))

    async def no_id(self, request: Request) -> Response:
        raise NotFound("no such upload")

    async def many(self, request: Request) -> Response:
        if "ids" not in request.query_params:
            return await self.listing(request)
        caller = self._caller(request)
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not ids:
            raise BadRequest("ids=<id>,<id>,... is required")
        if any(name in request.query_params for name in LISTING_PARAMS):
            raise BadRequest("ids= fetches given uploads; the listing's filters go without it")
        if len(ids) > MAX_BATCH:
            raise BadRequest(f"at most {MAX_BATCH} ids at once")
        if not all(is_safe_id(i) for i in ids):
            raise BadRequest("ids are letters, digits, '-' and '_' (1 to 128 of them)")
        bodies = await self.services.reader.get_many_raw(list(dict.fromkeys(ids)))
        if caller is not None:
            bodies = [b for b in bodies if json.loads(b)["owner"] == caller]
        signed = [self.playback.body(b) for b in bodies]
        return self._cached(request, b'{"uploads":[' + b",".join(signed) + b"]}")

    async def listing(self, request: Request) -> Response:
        """Every upload, or an owner's, from the state: the backend's (API key) only."""
        settings = self.services.settings
        token = bearer(request.headers.get("authorization"))
        if token is None:
            raise Unauthorized("send Authorization: Bearer <API key>")
        if not is_api_key(token, settings.api_key):
            raise wrong_api_key(settings.api_key)
        query = list_query(request.query_params)
        page = await run_read(self.services.state.status.page, query)
        signed = [self.playback.body(encode(record)) for record in page.records]
        return self._cached(request, page_body(page, signed))


def none_match(header: str | None, etag: str) -> bool:
    """Whether If-None-Match fails for a resource that exists (RFC 9110, 13.1.2): `*`
    matches any current representation, else one of the listed tags, compared weakly."""
    if not header:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    checks: dict[str, str] = {}
    try:
        await services.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means "not ready", with the reason
        checks["redis"] = f"error: {exc}"
    try:
        await run_blocking(_probe_write, str(services.settings.data_dir))
        checks["storage"] = "ok"
    except OSError as exc:
        checks["storage"] = f"error: {exc}"
    # Low space is reported before writes fail: a balancer then sends uploads elsewhere.
    minimum = services.settings.min_free_bytes
    try:
        free = await run_blocking(free_bytes, services.settings.data_dir)
        checks["space"] = "ok" if free >= minimum else f"low: {free} bytes free, below {minimum}"
    except OSError as exc:
        checks["space"] = f"error: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _probe_write(directory: str) -> None:
    path = os.path.join(directory, f".ready-{secrets.token_hex(4)}")
    with open(path, "wb") as f:
        f.write(b"ok")
    os.unlink(path)


async def metrics(request: Request) -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
