"""GET/HEAD /media/{id}/{name}: published media, never served as active content.

Uploaded media is hostile: whatever a published file holds, a browser must
never run it as a page of this origin. So every answer here carries
`X-Content-Type-Options: nosniff` and a CSP sandbox, and its Content-Type
comes from the fixed map of the names the service writes (`media_types`);
anything else is `application/octet-stream`. The CSP applies to a response
only when it is rendered as a document (opened in a tab): hls.js and
<video> fetch playlists and segments as subresources, which it does not touch.
`Cross-Origin-Resource-Policy: cross-origin` lets other origins (the backend's
pages, a player on another host) embed the media, as they are meant to.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from .errors import NotFound
from .ids import is_safe_id
from .media_files import name_parts
from .media_types import PLAYLIST, is_playlist, media_type_for
from .status import etag_of

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


class MediaSource(Protocol):
    """Where published files are read from (the local disk, or B2)."""

    async def playlist(self, upload_id: str, parts: list[str]) -> bytes | None:
        """A playlist's text, whole; None if there is no such playlist."""
        ...

    async def file(
        self, request: Request, upload_id: str, parts: list[str], headers: dict[str, str]
    ) -> Response | None:
        """The response for any other file (with `headers`); None if there is none."""
        ...


class MediaEndpoint:
    def __init__(self, source: MediaSource) -> None:
        self.source = source

    async def endpoint(self, request: Request) -> Response:
        upload_id = request.path_params["upload_id"]
        name = request.path_params["name"]
        parts = name_parts(name) if is_safe_id(upload_id) else None
        if parts is None:
            raise NotFound("no such file")
        if is_playlist(name):
            body = await self.source.playlist(upload_id, parts)
            if body is None:
                raise NotFound("no such file")
            return self._playlist(request, body)
        headers = {
            **SECURITY_HEADERS,
            "Content-Type": media_type_for(name),
            "Cache-Control": "public, max-age=3600",
        }
        response = await self.source.file(request, upload_id, parts, headers)
        if response is None:
            raise NotFound("no such file")
        return response

    def _playlist(self, request: Request, body: bytes) -> Response:
        etag = etag_of(body)
        # Playlists name the other files: revalidated, so a re-publication shows at once.
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=PLAYLIST)
        return Response(body, headers=headers, media_type=PLAYLIST)
