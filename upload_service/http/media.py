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

With MEDIA_ACCESS=signed, every request needs the upload's signed query
(`media_signing`): 403 `bad_signature` or `url_expired` otherwise, before
anything about the file is looked at. Playlists (and the storyboard's WebVTT,
which names its sprite sheet) are rewritten as they are served so that every
URI in them carries the query they came with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from upload_service.core.errors import NotFound
from upload_service.core.ids import is_safe_id
from upload_service.core.media_signing import MediaSigner
from upload_service.core.media_types import (
    PLAYLIST,
    is_playlist,
    is_storyboard,
    media_type_for,
)
from upload_service.core.playlists import rewrite_storyboard, rewrite_uris
from upload_service.core.settings import Settings
from upload_service.core.status import etag_of
from upload_service.http.media_files import LocalMedia, name_parts

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

    async def uri_mapper(
        self, upload_id: str, parts: list[str], query: str
    ) -> Callable[[str], str]:
        """What each URI of the playlist `parts` becomes, for a request signed with `query`."""
        ...


class MediaEndpoint:
    def __init__(self, source: MediaSource, signer: MediaSigner | None = None) -> None:
        self.source = source
        self.signer = signer  # None: MEDIA_ACCESS=public

    async def endpoint(self, request: Request) -> Response:
        upload_id = request.path_params["upload_id"]
        name = request.path_params["name"]
        if not is_safe_id(upload_id):
            raise NotFound("no such file")
        exp = None
        if self.signer is not None:
            params = request.query_params
            exp = self.signer.verify(upload_id, params.get("exp"), params.get("sig"))
        parts = name_parts(name)
        if parts is None:
            raise NotFound("no such file")
        if is_playlist(name) or is_storyboard(name):
            body = await self.source.playlist(upload_id, parts)
            if body is None:
                raise NotFound("no such file")
            rewrite = rewrite_uris if is_playlist(name) else rewrite_storyboard
            if self.signer is not None and exp is not None:
                query = f"exp={exp}&sig={self.signer.signature(upload_id, exp)}"
                body = rewrite(body, await self.source.uri_mapper(upload_id, parts, query))
            return self._playlist(request, body, media_type_for(name))
        headers = {
            **SECURITY_HEADERS,
            "Content-Type": media_type_for(name),
            "Cache-Control": self._cache_control(exp),
        }
        response = await self.source.file(request, upload_id, parts, headers)
        if response is None:
            raise NotFound("no such file")
        return response

    def _cache_control(self, exp: int | None) -> str:
        if exp is None or self.signer is None:
            return "public, max-age=3600"
        # A cache keyed by the signed URL must not outlive the signature.
        left = exp - int(self.signer.clock())
        return f"max-age={max(0, min(3600, left))}"

    def _playlist(self, request: Request, body: bytes, media_type: str = PLAYLIST) -> Response:
        etag = etag_of(body)
        # Playlists name the other files: revalidated, so a re-publication shows at once.
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=media_type)
        return Response(body, headers=headers, media_type=media_type)


def make_media_source(settings: Settings) -> MediaSource:
    """Local files, or in signed mode with a B2 publisher, the private bucket."""
    if settings.b2_enabled and settings.media_access == "signed":
        from upload_service.http.media_b2 import B2Media  # b2sdk only where B2 is configured

        return B2Media.from_settings(settings)
    return LocalMedia(settings.media_dir)
