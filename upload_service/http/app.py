"""create_app(settings) -> Starlette: routes, middleware, error responses."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from upload_service.core import logs
from upload_service.core.body_rate import RateFloor
from upload_service.core.diskspace import is_no_space
from upload_service.core.errors import InsufficientStorage, ServiceError, Unavailable
from upload_service.core.lifecycle import ServiceHooks
from upload_service.core.logs import log_event, request_id
from upload_service.core.media_signing import media_signer
from upload_service.core.quotas import QuotaLimits, Quotas, StateUnfinishedUploads
from upload_service.core.settings import Settings
from upload_service.core.state.factory import is_postgres
from upload_service.core.tokens import TokenClaims, bearer, decode_token
from upload_service.http import openapi, page, webhooks_api
from upload_service.http import status_api as api
from upload_service.http.body_path import body_path
from upload_service.http.downloads import Downloads
from upload_service.http.media import MediaEndpoint
from upload_service.http.media_host import MediaHostSplit, media_host
from upload_service.http.middleware import MethodOverride, RequestContext, RouteRecorder
from upload_service.http.services import Services
from upload_service.http.tus.draft import DRAFT_HEADERS, DraftHandler
from upload_service.http.tus.handler import TusConfig, TusHandler
from upload_service.http.tus.headers import TUS_HEADERS, TUS_VERSION

log = logging.getLogger("upload_service.http.app")


# See TusConfig.admitted: under a burst of uploads, a bound of 4 or 8 kept HEADs
# answering promptly, while 16 hardly helped (figures: docs/performance.md).
LOCAL_ADMITTED = 8


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    if not settings.token_secret:
        raise SystemExit("UPLOAD_TOKEN_SECRET is not set: the server cannot check upload tokens")
    secret = settings.token_secret
    services = services or Services.from_settings(settings)
    for directory in (settings.data_dir, settings.media_dir):
        directory.mkdir(parents=True, exist_ok=True)

    def authenticate(request: Request) -> TokenClaims:
        return decode_token(bearer(request.headers.get("authorization")), secret)

    quotas = make_quotas(settings, services)

    hooks = ServiceHooks(
        services.status,
        services.redis,  # the status cache, refreshed from the event loop
        services.jobs,
        webhooks=bool(settings.webhook_url),
        locker=services.locker,
        quotas=quotas,
        progress_interval=settings.progress_interval,
    )
    tus = TusHandler(
        services.store,
        services.locker,
        TusConfig(
            max_size=settings.max_size,
            expiry=settings.expiry,
            behind_proxy=settings.behind_proxy,
            body_timeout=settings.body_timeout,
            rate_floor=RateFloor(settings.min_body_rate, settings.body_rate_window),
            admitted=LOCAL_ADMITTED if settings.upload_store == "local" else None,
        ),
        authenticate,
        hooks,
        make_body=body_path(settings).make_body,  # UPLOAD_FAST_PATH
        quotas=quotas,
    )
    draft = DraftHandler(tus)  # IETF resumable uploads, on the same endpoints
    status_api = api.StatusAPI(services)
    webhook_api = webhooks_api.WebhooksAPI(services)

    download = Downloads(services.store, secret, settings.api_key).endpoint

    async def upload_method(request: Request) -> Response:
        handler = {
            "HEAD": tus.head,
            "PATCH": tus.patch,
            "DELETE": tus.delete,
            "OPTIONS": tus.options,
        }[request.method]
        if request.method == "HEAD" and "tus-resumable" not in request.headers:
            return await download(request)  # a plain HEAD of the file, not tus
        return await handler(request)

    routes = [
        # The status API is polled far more than anything else: matched first.
        Route("/v1/uploads", status_api.many, methods=["GET"]),
        # An empty id: 404, not a redirect to the listing above.
        Route("/v1/uploads/", status_api.no_id, methods=["GET"]),
        Route("/v1/uploads/{upload_id}", status_api.one, methods=["GET"]),
        Route("/files/", draft.or_else(tus.create), methods=["POST"]),
        Route("/files/", draft.or_else(tus.options), methods=["OPTIONS"]),
        Route("/files", draft.or_else(tus.create), methods=["POST"]),
        Route(
            "/files/{upload_id}",
            draft.or_else(upload_method),
            methods=["HEAD", "PATCH", "DELETE", "OPTIONS"],
        ),
        Route("/files/{upload_id}", download, methods=["GET"]),
        Route("/v1/uploads/{upload_id}/events", webhook_api.events, methods=["GET"]),
        Route(
            "/v1/uploads/{upload_id}/events/{event_id}/resend",
            webhook_api.resend,
            methods=["POST"],
        ),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.endpoint, methods=["GET"]),
        *page.routes,  # GET /upload: the browser upload page
        Route(
            "/media/{upload_id}/{name:path}",
            MediaEndpoint(services.media, media_signer(settings, services.clock)).endpoint,
            methods=["GET", "HEAD"],
        ),
    ]
    exposed = [*TUS_HEADERS, *DRAFT_HEADERS, "Location", "ETag", "X-Request-ID"]
    # Media on a host of their own (MEDIA_PUBLIC_URL): only /media there, the rest elsewhere.
    split_host = media_host(settings)
    host_split = (
        [Middleware(MediaHostSplit, host=split_host, behind_proxy=settings.behind_proxy)]
        if split_host
        else []
    )
    middleware = [
        Middleware(RequestContext),
        *host_split,
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-None-Match",
                *TUS_HEADERS,
                *DRAFT_HEADERS,
            ],
            expose_headers=exposed,
            max_age=86400,
        ),
        Middleware(MethodOverride),
        Middleware(RouteRecorder),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_event(log, "server.started", data_dir=str(settings.data_dir))
        await services.start()
        yield
        # uvicorn cancels requests still running past its grace period, then
        # lands here: give them a moment to record their offset and unlock.
        await tus.drain(grace=5)
        await hooks.aclose()  # offsets still waiting for their record
        await services.aclose()
        log_event(log, "server.stopped")
        # A worker process of `serve` dies of the SIGTERM uvicorn raises again after
        # this, with no atexit: what is queued is written now, and the rest directly.
        logs.stop_writer()

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            ServiceError: service_error,
            RedisConnectionError: redis_unavailable,
            RedisTimeoutError: redis_unavailable,
            OSError: os_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.tus = tus
    app.state.hooks = hooks
    return app


def make_quotas(settings: Settings, services: Services) -> Quotas | None:
    """Per-user creation limits: the rate in Redis; unfinished uploads counted by a
    PostgreSQL state itself, or in Redis beside local files (core/quotas.py)."""
    limits = QuotaLimits(settings.max_unfinished, settings.creation_rate, settings.creation_window)
    if not limits.max_unfinished and not limits.creation_rate:
        return None
    status = services.status

    def still_unfinished(upload_id: str) -> bool:
        record = status.get(upload_id)
        return record is not None and record["state"] == "uploading"

    unfinished = StateUnfinishedUploads(services.state) if is_postgres(settings) else None
    return Quotas.on_redis(services.sync_redis, limits, still_unfinished, unfinished)


# A refused request whose body may still be on its way: the answer closes the
# connection rather than read a large body to its end (http.lingering_close drains
# a bounded amount, so the client hears the answer first).
UNREAD_BODY = 64 * 1024


def body_left_unread(request: Request) -> bool:
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        return int(declared) > UNREAD_BODY
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers = {"Tus-Resumable": TUS_VERSION, **exc.headers}
    if body_left_unread(request):
        headers["Connection"] = "close"
    body = {"error": {"code": exc.code, "message": exc.message}}
    if request.method == "HEAD":
        return Response(status_code=exc.status, headers=headers)
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def redis_unavailable(request: Request, exc: Exception) -> Response:
    log.error("redis.unavailable", extra={"fields": {"path": request.url.path, "error": str(exc)}})
    return await service_error(request, Unavailable("Redis is not reachable; retry shortly"))


async def os_error(request: Request, exc: Exception) -> Response:
    """A full disk outside a body's write (a creation's records): 507, not a 500."""
    if is_no_space(exc):
        log.warning("storage.full", extra={"fields": {"path": request.url.path, "error": str(exc)}})
        return await service_error(request, InsufficientStorage())
    return await internal_error(request, exc)


async def internal_error(request: Request, exc: Exception) -> Response:
    rid = getattr(request.state, "request_id", None) or request_id.get()
    log.error(
        "http.internal_error",
        exc_info=exc,
        extra={"fields": {"path": request.url.path, "method": request.method, "request_id": rid}},
    )
    return JSONResponse(
        {"error": {"code": "internal_error", "message": f"internal error; quote request id {rid}"}},
        status_code=500,
    )
