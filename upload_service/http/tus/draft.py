"""The IETF draft "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload).

Interop versions 3 to 8 (8 is the newest the draft's text defines, drafts -09 and
later; tusd speaks 3 to 6). A request opts in with `Upload-Draft-Interop-Version`
and reaches the same endpoints, store, locks, tokens, expiry and hooks as tus
1.0.0: an upload made with the draft is an ordinary upload afterwards (status
API, pipeline, GET of its bytes).

What changed between the versions, as far as a server sees it:
  3      completeness is `Upload-Incomplete: ?1`, absent means complete
  4, 5   `Upload-Complete: ?1 / ?0` instead, required on creation and append
  6      appends must be `Content-Type: application/partial-upload`;
         `Upload-Limit` appears, with the lifetime as `expires`
  7, 8   the lifetime key is `max-age`; `Upload-Length` declares the length

ASGI cannot send the 104 (Upload Resumption Supported) interim response, so a
client learns the upload's URL from the final response only (the draft's
"careful upload creation": create with little or no content, then append).

One leniency: this service's store calls an upload finished when its offset
reaches a known length, so bytes up to an announced `Upload-Length` complete it
even under `Upload-Complete: ?0`; a later empty `?1` append is then answered as
a success rather than refused.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from email.message import Message

from starlette.requests import Request
from starlette.responses import Response

from upload_service.core.errors import (
    BadRequest,
    Forbidden,
    InsufficientStorage,
    InvalidOffset,
    MethodNotAllowed,
    MismatchedOffset,
    ServiceError,
    TooLarge,
    UnsupportedContentType,
)
from upload_service.core.ids import new_upload_id
from upload_service.core.store.base import UploadInfo
from upload_service.core.tokens import TokenClaims
from upload_service.http.tus.body import has_body
from upload_service.http.tus.handler import TusHandler

INTEROP_VERSIONS = range(3, 9)
NEWEST_VERSION = INTEROP_VERSIONS[-1]
PARTIAL_UPLOAD = "application/partial-upload"
Endpoint = Callable[[Request], Awaitable[Response]]
# CORS: the draft headers tus 1.0.0 lacks (TUS_HEADERS has Upload-Complete and Upload-Limit).
DRAFT_HEADERS = ("Upload-Incomplete", "Accept-Patch", "Content-Disposition")


def is_draft_request(request: Request) -> bool:
    return "upload-draft-interop-version" in request.headers


def _sf_boolean(value: str | None) -> bool | None:
    """A Structured Field Boolean (`?1`/`?0`); anything else counts as absent."""
    if value is None:
        return None
    return {"?1": True, "?0": False}.get(value.strip())


def _sf_integer(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    # The grammar allows at most 15 digits; other values make the field ignored.
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value)


def _representation_metadata(request: Request) -> dict[str, str | None]:
    """filename/filetype, the conventional keys, from the creation request's headers."""
    metadata: dict[str, str | None] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type and content_type != PARTIAL_UPLOAD:
        metadata["filetype"] = content_type
    disposition = request.headers.get("content-disposition")
    if disposition:
        parsed = Message()
        parsed["content-disposition"] = disposition
        filename = parsed.get_filename()  # understands filename*=UTF-8''... too
        if filename:
            metadata["filename"] = filename
    return metadata


class DraftHandler:
    """The draft's four request kinds on top of a TusHandler's store, locks and hooks."""

    def __init__(self, tus: TusHandler) -> None:
        self.tus = tus

    # -- headers -------------------------------------------------------------
    def _version(self, request: Request) -> int:
        raw = request.headers.get("upload-draft-interop-version", "")
        version = _sf_integer(raw)
        if version is None or version not in INTEROP_VERSIONS:
            raise BadRequest(
                f"Upload-Draft-Interop-Version {raw.strip()!r} is not supported; "
                f"this server speaks {INTEROP_VERSIONS[0]} to {NEWEST_VERSION}"
            )
        return version

    def _complete(self, request: Request, version: int) -> bool:
        if version == 3:
            return _sf_boolean(request.headers.get("upload-incomplete")) is not True
        complete = _sf_boolean(request.headers.get("upload-complete"))
        if complete is None:
            raise BadRequest("Upload-Complete: ?1 or ?0 is required")
        return complete

    def _headers(self, version: int, complete: bool | None = None, **extra: str) -> dict[str, str]:
        headers = {"Upload-Draft-Interop-Version": str(version), **extra}
        if complete is not None:
            if version == 3:
                headers["Upload-Incomplete"] = "?0" if complete else "?1"
            else:
                headers["Upload-Complete"] = "?1" if complete else "?0"
        return headers

    def _limits(self, version: int, claims: TokenClaims, info: UploadInfo | None) -> dict[str, str]:
        if version < 6:
            return {}
        limits = [f"max-size={self.tus._limit(claims)}"]
        if info is not None and not info.finished:
            remaining = max(0, int(self.tus.expires_at(info) - time.time()))
            limits.append(f"{'expires' if version == 6 else 'max-age'}={remaining}")
        return {"Upload-Limit": ", ".join(limits)}

    def _too_large(self, message: str, version: int, claims: TokenClaims) -> ServiceError:
        return TooLarge(message, headers=self._limits(version, claims, None))

    def _too_large_for(self, version: int, claims: TokenClaims) -> Callable[[str], ServiceError]:
        return lambda message: self._too_large(message, version, claims)

    # -- OPTIONS -------------------------------------------------------------
    async def options(self, request: Request) -> Response:
        version = self._version(request)
        headers = self._headers(version)
        headers["Accept-Patch"] = PARTIAL_UPLOAD
        if version >= 6:  # no token here: the server-wide limit
            headers["Upload-Limit"] = f"max-size={self.tus.config.max_size}"
        return Response(status_code=204, headers=headers)

    # -- upload creation -----------------------------------------------------
    async def create(self, request: Request) -> Response:
        version = self._version(request)
        claims = self.tus.authenticate(request)
        complete = self._complete(request, version)
        limit = self.tus._limit(claims)
        length = self._declared_length(request, complete, offset=0)
        if length is not None and length > limit:
            raise self._too_large(
                f"upload of {length} bytes exceeds the limit of {limit} bytes", version, claims
            )
        info = UploadInfo(
            id=new_upload_id(),
            owner=claims.sub,
            length=length,
            metadata=_representation_metadata(request),
            meta=dict(claims.meta),  # claims are shared by cached tokens
            kinds=claims.kinds,
        )
        await self.tus.appender.create(info)
        try:
            info = await self.tus.appender.append(
                request,
                info.id,
                None,
                limit,
                completes=complete,
                too_large=self._too_large_for(version, claims),
            )
        except InsufficientStorage as exc:
            # The upload exists and keeps what was stored: its URL lets the client resume.
            exc.headers["Location"] = self.tus.location(request, info.id)
            raise
        except TooLarge:
            # Content past the token's max_bytes: refused as tus refuses it, never
            # cut short and taken as complete; the new upload goes.
            await self.tus.appender.abandon(info)
            raise
        done = info.finished
        headers = self._headers(
            version,
            done,
            Location=self.tus.location(request, info.id),
            **{"Upload-Offset": str(info.offset)},
        )
        if not done:
            headers.update(self._limits(version, claims, info))
        return Response(status_code=201, headers=headers)

    def _declared_length(self, request: Request, complete: bool, offset: int) -> int | None:
        """The length the request indicates (Upload-Length, or Complete + Content-Length)."""
        declared = _sf_integer(request.headers.get("upload-length"))
        if complete:
            content_length = _sf_integer(request.headers.get("content-length"))
            if content_length is not None:
                implied = offset + content_length
                if declared is not None and declared != implied:
                    raise BadRequest(
                        f"inconsistent length: Upload-Length {declared} but the content "
                        f"ends the upload at {implied}"
                    )
                declared = implied
        return declared

    # -- offset retrieval ----------------------------------------------------
    async def head(self, request: Request) -> Response:
        version = self._version(request)
        claims = self.tus.authenticate(request)
        info = await self.tus.load(request.path_params["upload_id"], claims)
        headers = self._headers(
            version,
            info.finished,
            **{"Upload-Offset": str(info.offset), "Cache-Control": "no-store"},
        )
        if info.length is not None:
            headers["Upload-Length"] = str(info.length)
        headers.update(self._limits(version, claims, info))
        return Response(status_code=204, headers=headers)

    # -- upload append -------------------------------------------------------
    async def patch(self, request: Request) -> Response:
        version = self._version(request)
        claims = self.tus.authenticate(request)
        if version >= 6:
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type.lower() != PARTIAL_UPLOAD:
                raise UnsupportedContentType(
                    f"appending needs Content-Type: {PARTIAL_UPLOAD} (interop version {version})"
                )
        offset = _sf_integer(request.headers.get("upload-offset"))
        if offset is None:
            raise InvalidOffset("Upload-Offset is required and must be a non-negative integer")
        complete = self._complete(request, version)
        upload_id = request.path_params["upload_id"]
        limit = self.tus._limit(claims)

        async def prepare() -> UploadInfo:
            info = await self.tus.load(upload_id, claims)
            if info.concat == "final":
                raise Forbidden("a final concatenation cannot be appended to")
            if info.finished:
                if complete and offset == info.offset and not has_body(request):
                    return info  # a repeated completion: answered as a success
                raise BadRequest(f"upload {upload_id} is already completed")
            if offset != info.offset:
                raise MismatchedOffset(
                    f"Upload-Offset is {offset} but the upload is at {info.offset}",
                    headers=self._headers(version, False, **{"Upload-Offset": str(info.offset)}),
                )
            return info

        async def declare(info: UploadInfo) -> None:
            await self._set_length(request, info, complete, limit, version, claims)

        info = await self.tus.appender.append(
            request,
            upload_id,
            prepare,
            limit,
            declare=declare,
            completes=complete,
            too_large=self._too_large_for(version, claims),
        )
        headers = self._headers(version, info.finished, **{"Upload-Offset": str(info.offset)})
        if not info.finished:
            headers.update(self._limits(version, claims, info))
        return Response(status_code=204, headers=headers)

    async def _set_length(
        self,
        request: Request,
        info: UploadInfo,
        complete: bool,
        limit: int,
        version: int,
        claims: TokenClaims,
    ) -> None:
        declared = self._declared_length(request, complete, info.offset)
        if declared is None or declared == info.length:
            return
        if info.length is not None:
            raise BadRequest(
                f"inconsistent length: the upload's length is {info.length}, "
                f"this request indicates {declared}"
            )
        if declared < info.offset:
            raise BadRequest(f"inconsistent length: {declared} is below the offset {info.offset}")
        if declared > limit:
            raise self._too_large(
                f"upload of {declared} bytes exceeds the limit of {limit} bytes", version, claims
            )
        info.length = declared
        await self.tus.store.save(info)

    # -- cancellation ----------------------------------------------------------
    async def delete(self, request: Request) -> Response:
        version = self._version(request)
        claims = self.tus.authenticate(request)
        upload_id = request.path_params["upload_id"]
        async with self.tus.locker.lock(upload_id):
            info = await self.tus.load(upload_id, claims)
            await self.tus.store.terminate(upload_id)
        await self.tus.hooks.terminated(info)
        return Response(status_code=204, headers=self._headers(version))

    # -- routing ---------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        handler = {
            "POST": self.create,
            "HEAD": self.head,
            "PATCH": self.patch,
            "DELETE": self.delete,
            "OPTIONS": self.options,
        }.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"{request.method} is not part of the resumable-upload draft")
        return await handler(request)

    def or_else(self, fallback: Endpoint) -> Endpoint:
        """An endpoint: draft requests come here, every other request goes to `fallback`."""

        async def endpoint(request: Request) -> Response:
            if is_draft_request(request):
                return await self.dispatch(request)
            return await fallback(request)

        return endpoint
