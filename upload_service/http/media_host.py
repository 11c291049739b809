"""Media on a host of its own: `/media` answers only there, everything else only elsewhere.

Served from the upload page's origin, a media file that a browser rendered
as a page anyway (an old browser, a bug) would run with that origin's
cookies and storage. On another origin (MEDIA_PUBLIC_URL naming another host,
a CNAME to the same servers or a CDN) it could reach nothing of the service.
The split makes that hold even when both names reach the same processes: a
request for /media on the service's host, or for anything else on the
media host, is answered 404. Health checks answer on both.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.core.settings import Settings

ANYWHERE = ("/healthz", "/readyz")


def _normal(netloc: str) -> str:
    netloc = netloc.strip().lower()
    for default in (":80", ":443"):
        netloc = netloc.removesuffix(default)
    return netloc


def media_host(settings: Settings) -> str | None:
    """The host media are served on, when it is not the service's own."""
    media = urlsplit(settings.media_public_url or "").netloc
    service = urlsplit(settings.public_url or "").netloc
    if not media or _normal(media) == _normal(service):
        return None
    return _normal(media)


class MediaHostSplit:
    def __init__(self, app: ASGIApp, host: str, behind_proxy: bool = False) -> None:
        self.app = app
        self.host = host
        self.behind_proxy = behind_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in ANYWHERE:
            on_media_host = self._host_of(scope) == self.host
            if scope["path"].startswith("/media/") != on_media_host:
                response = JSONResponse(
                    {"error": {"code": "not_found", "message": "not served on this host"}},
                    status_code=404,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _host_of(self, scope: Scope) -> str:
        # A scan, not a dict: this runs on every request, uploads' PATCHes included.
        host = forwarded = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"x-forwarded-host" and self.behind_proxy:
                forwarded = value.split(b",")[0]  # the first proxy's view, as for Location
        return _normal((forwarded or host).decode("latin-1"))
