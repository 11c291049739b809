"""Pure ASGI middleware: request ids and access logs, metrics labels from the route
table, and X-HTTP-Method-Override."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upload_service.core import metrics
from upload_service.core.logs import log_event, request_id

log = logging.getLogger("upload_service.http")
QUIET_ROUTES = ("/healthz", "/metrics")
POLL_ROUTES = ("/v1/uploads/{upload_id}", "/v1/uploads")
# Metrics labels come from the route table, never from the request: a path or a method
# no route has collapses into these, so junk requests add no series.
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"})


class RequestContext:
    """Gives each request an id (X-Request-ID), logs it once, counts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:64] if incoming else secrets.token_hex(8)
        token = request_id.set(rid)
        # Also in the scope: the 500 handler runs outside this middleware, after
        # the context variable is reset, and must still quote the id.
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route, method = _labels(scope)
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(method, route).observe(elapsed)
            # Polls are counted above; a log line each would be most of their cost
            # (thousands a second from a busy backend) and tell nothing new.
            quiet = route in QUIET_ROUTES or (route in POLL_ROUTES and status < 400)
            if not quiet:
                log_event(
                    log,
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            request_id.reset(token)


def _labels(scope: Scope) -> tuple[str, str]:
    """(route, method) for metrics: the matched route's path template, and the method
    if that route takes it; anything else collapses (see UNMATCHED_ROUTE)."""
    matched = scope["state"].get(MATCHED_ROUTE)
    route = getattr(matched, "path", None) if matched is not None else None
    method = scope["method"]
    methods = getattr(matched, "methods", None)
    if route is None or (methods is not None and method not in methods):
        route = UNMATCHED_ROUTE if route is None else route
        method = method if method in KNOWN_METHODS else OTHER_METHOD
    return route, method


# Where RouteRecorder leaves the matched route for RequestContext.
MATCHED_ROUTE = "matched_route"


class RouteRecorder:
    """Innermost: notes the route the router matched (it sets `scope["route"]`) in the
    request's shared state, which RequestContext reads for its labels; the scope
    itself may be a copy by then (MethodOverride makes one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if "state" in scope:
                scope["state"][MATCHED_ROUTE] = scope.get("route")


class MethodOverride:
    """tus lets clients that cannot send PATCH or DELETE tunnel them through POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            override = dict(scope["headers"]).get(b"x-http-method-override")
            if override:
                scope = {**scope, "method": override.decode("latin-1").upper()}
        await self.app(scope, receive, send)
