"""tus 1.0.0 over a store: requests in, store calls out. Knows no disk and no B2.

Each method checks the request in the order the specification implies (version,
then token, then headers, then state), so that the first thing wrong is the
thing reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from upload_service.core.body_rate import RateFloor
from upload_service.core.errors import (
    BadRequest,
    Forbidden,
    Gone,
    InsufficientStorage,
    InvalidLength,
    MismatchedOffset,
    NotFound,
    TooLarge,
    UnsupportedContentType,
    UnsupportedVersion,
)
from upload_service.core.ids import new_upload_id
from upload_service.core.locks import Locker
from upload_service.core.quotas import Quotas
from upload_service.core.store.base import UploadGone, UploadInfo, UploadNotFound, UploadStore
from upload_service.core.tokens import TokenClaims
from upload_service.http.tus.append import Appender, check_room
from upload_service.http.tus.body import MakeBody, RequestBody, has_body
from upload_service.http.tus.headers import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    TUS_VERSION,
    format_metadata,
    http_date,
    parse_checksum,
    parse_concat,
    parse_length,
    parse_metadata,
    parse_offset,
)
from upload_service.http.tus.hooks import NoHooks, UploadHooks

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"


@dataclass
class TusConfig:
    max_size: int
    expiry: int
    behind_proxy: bool = False
    path: str = "/files/"
    body_timeout: float = 60.0  # seconds a body may send nothing before it is cut off
    rate_floor: RateFloor | None = None  # a body slower than this is cut off too
    # How many creations, PATCH starts and PATCH ends may run at once (None: any).
    # Each is some interpreter time between thread and Redis round trips; a
    # hundred at once fill every turn of the event loop and a HEAD waits behind
    # them all (the bench's HEAD latency under a burst shows it). Bodies
    # stream outside of it. Only for stores whose calls are local: a store that
    # waits on the network (B2) would hold its places while idle.
    admitted: int | None = None


class TusHandler:
    def __init__(
        self,
        store: UploadStore,
        locker: Locker,
        config: TusConfig,
        authenticate: Callable[[Request], TokenClaims],
        hooks: UploadHooks | None = None,
        make_body: MakeBody = RequestBody,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.locker = locker
        self.config = config
        self.authenticate = authenticate
        self.hooks = hooks or NoHooks()
        self.appender = Appender(
            store,
            locker,
            self.hooks,
            make_body=make_body,
            body_timeout=config.body_timeout,
            admitted=config.admitted,
            quotas=quotas,
            rate_floor=config.rate_floor,
        )

    async def drain(self, grace: float) -> None:
        """On shutdown: let cancelled appends record their offset and release their lock."""
        await self.appender.drain(grace)

    # -- helpers -----------------------------------------------------------
    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": TUS_VERSION, **extra}

    def _check_version(self, request: Request) -> None:
        if request.headers.get("tus-resumable") != TUS_VERSION:
            raise UnsupportedVersion(headers={"Tus-Version": TUS_VERSION})

    def _limit(self, claims: TokenClaims) -> int:
        if claims.max_bytes is None:
            return self.config.max_size
        return min(self.config.max_size, claims.max_bytes)

    def expires_at(self, info: UploadInfo) -> float:
        return info.updated_at + self.config.expiry

    def _expiry_headers(self, info: UploadInfo) -> dict[str, str]:
        if info.finished or info.concat == "final":
            return {}
        return {"Upload-Expires": http_date(self.expires_at(info))}

    async def load(self, upload_id: str, claims: TokenClaims) -> UploadInfo:
        """The caller's upload: another owner's is as missing as a missing one."""
        try:
            info = await self.store.get(upload_id)
        except UploadNotFound:
            raise NotFound(f"upload {upload_id} not found") from None
        except UploadGone:
            raise Gone(f"upload {upload_id} expired and was removed") from None
        if info.owner != claims.sub:
            raise NotFound(f"upload {upload_id} not found")
        if not info.finished and time.time() > self.expires_at(info):
            raise Gone(f"upload {upload_id} expired")
        return info

    def location(self, request: Request, upload_id: str) -> str:
        scheme, host = request.url.scheme, request.headers.get("host", request.url.netloc)
        if self.config.behind_proxy:
            scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
            host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
        root = request.scope.get("root_path", "")
        return f"{scheme}://{host}{root}{self.config.path}{upload_id}"

    # -- OPTIONS -------------------------------------------------------------
    async def options(self, request: Request) -> Response:
        return Response(
            status_code=204,
            headers=self._headers(
                **{
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": ",".join(EXTENSIONS),
                    "Tus-Max-Size": str(self.config.max_size),
                    "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
                }
            ),
        )

    # -- POST (creation, creation-with-upload, defer-length, concatenation) ---
    async def create(self, request: Request) -> Response:
        self._check_version(request)
        claims = self.authenticate(request)
        headers = request.headers
        concat, part_ids = parse_concat(headers.get("upload-concat"))
        metadata = parse_metadata(headers.get("upload-metadata"))
        limit = self._limit(claims)

        length: int | None
        if concat == "final":
            if "upload-length" in headers:
                raise BadRequest("a final concatenation must not send Upload-Length")
            length = None
        elif "upload-length" in headers:
            if "upload-defer-length" in headers:
                raise BadRequest("send Upload-Length or Upload-Defer-Length, not both")
            length = parse_length(headers["upload-length"])
        elif headers.get("upload-defer-length") == "1":
            length = None
        elif "upload-defer-length" in headers:
            raise InvalidLength("Upload-Defer-Length must be 1")
        else:
            raise InvalidLength("Upload-Length or Upload-Defer-Length: 1 is required")
        if length is not None and length > limit:
            raise TooLarge(f"upload of {length} bytes exceeds the limit of {limit} bytes")

        info = UploadInfo(
            id=new_upload_id(),
            owner=claims.sub,
            length=length,
            metadata=metadata,
            meta=dict(claims.meta),  # claims are shared by cached tokens
            kinds=claims.kinds,
            concat=concat,
        )
        if concat == "final":
            parts = await self._final_parts(part_ids, claims, limit)
            info.parts = part_ids
            if self.appender.quotas is not None:
                await self.appender.quotas.admit(info.owner)
            await self.store.create(info)
            await self.store.concatenate(info, parts)
            await self.hooks.created(info)
            await self.hooks.finished(info)
            return Response(
                status_code=201,
                headers=self._headers(Location=self.location(request, info.id)),
            )

        with_body = has_body(request)
        if with_body and headers.get("content-type") != OFFSET_CONTENT_TYPE:
            raise UnsupportedContentType()
        checksum = self._checksum(request) if with_body else None
        if with_body:  # refused before anything is created
            check_room(request, (length if length is not None else limit) - info.offset)
        await self.appender.create(info)
        response_headers = self._headers(Location=self.location(request, info.id))
        if with_body:
            try:
                info = await self.appender.append(request, info.id, None, limit, checksum)
            except InsufficientStorage as exc:
                # The upload exists and keeps what was stored: its URL lets the client resume.
                exc.headers["Location"] = response_headers["Location"]
                raise
            except TooLarge:
                await self.appender.abandon(info)  # a body past the limit: no upload
                raise
            response_headers["Upload-Offset"] = str(info.offset)
        response_headers.update(self._expiry_headers(info))
        return Response(status_code=201, headers=response_headers)

    async def _final_parts(
        self, part_ids: list[str], claims: TokenClaims, limit: int
    ) -> list[UploadInfo]:
        parts = []
        for part_id in part_ids:
            try:
                part = await self.load(part_id, claims)
            except (NotFound, Gone):
                raise BadRequest(f"partial upload {part_id} not found") from None
            if part.concat != "partial":
                raise BadRequest(f"upload {part_id} is not a partial upload")
            if not part.finished:
                raise BadRequest(f"partial upload {part_id} is not finished")
            parts.append(part)
        total = sum(p.offset for p in parts)
        if total > limit:
            raise TooLarge(f"the concatenation of {total} bytes exceeds the limit of {limit} bytes")
        return parts

    # -- HEAD ------------------------------------------------------------------
    async def head(self, request: Request) -> Response:
        self._check_version(request)
        claims = self.authenticate(request)
        info = await self.load(request.path_params["upload_id"], claims)
        headers = self._headers(**{"Upload-Offset": str(info.offset), "Cache-Control": "no-store"})
        if info.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(info.length)
        if info.metadata:
            headers["Upload-Metadata"] = format_metadata(info.metadata)
        if info.concat == "partial":
            headers["Upload-Concat"] = "partial"
        elif info.concat == "final":
            headers["Upload-Concat"] = "final;" + " ".join(
                self.location(request, p) for p in info.parts
            )
        headers.update(self._expiry_headers(info))
        return Response(status_code=200, headers=headers)

    # -- PATCH -----------------------------------------------------------------
    async def patch(self, request: Request) -> Response:
        self._check_version(request)
        claims = self.authenticate(request)
        if request.headers.get("content-type") != OFFSET_CONTENT_TYPE:
            raise UnsupportedContentType()
        offset = parse_offset(request.headers.get("upload-offset"))
        checksum = self._checksum(request)
        upload_id = request.path_params["upload_id"]
        limit = self._limit(claims)

        async def prepare() -> UploadInfo:
            info = await self.load(upload_id, claims)
            if info.concat == "final":
                raise Forbidden("a final concatenation cannot be patched")
            if offset != info.offset:
                raise MismatchedOffset(
                    f"Upload-Offset is {offset} but the upload is at {info.offset}",
                    headers={"Upload-Offset": str(info.offset)},
                )
            return info

        async def declare(info: UploadInfo) -> None:
            await self._declare_length(request, info, limit)

        info = await self.appender.append(
            request, upload_id, prepare, limit, checksum, declare=declare
        )
        headers = self._headers(**{"Upload-Offset": str(info.offset)})
        headers.update(self._expiry_headers(info))
        return Response(status_code=204, headers=headers)

    async def _declare_length(self, request: Request, info: UploadInfo, limit: int) -> None:
        raw = request.headers.get("upload-length")
        if raw is None:
            return
        length = parse_length(raw)
        if info.length is not None:
            if length != info.length:
                raise BadRequest("Upload-Length cannot change once set")
            return
        if length < info.offset:
            raise InvalidLength(f"Upload-Length {length} is below the stored offset {info.offset}")
        if length > limit:
            raise TooLarge(f"upload of {length} bytes exceeds the limit of {limit} bytes")
        info.length = length
        await self.store.save(info)

    def _checksum(self, request: Request) -> tuple[str, bytes] | None:
        raw = request.headers.get("upload-checksum")
        return parse_checksum(raw) if raw is not None else None

    # -- DELETE (termination) ---------------------------------------------------
    async def delete(self, request: Request) -> Response:
        self._check_version(request)
        claims = self.authenticate(request)
        upload_id = request.path_params["upload_id"]
        async with self.locker.lock(upload_id):
            info = await self.load(upload_id, claims)
            await self.store.terminate(upload_id)
        await self.hooks.terminated(info)
        return Response(status_code=204, headers=self._headers())
