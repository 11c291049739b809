"""GET /files/{id}: a finished upload's bytes, for its owner or the backend, with Range.

This is the only way out for an original (`outputs.original`): the bytes are
whatever was uploaded, so they always leave as an attachment of opaque bytes,
sandboxed should a browser render them anyway, never as a page of this origin.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from upload_service.core.errors import NotFound
from upload_service.core.ids import is_safe_id
from upload_service.core.store.base import UploadGone, UploadInfo, UploadNotFound, UploadStore
from upload_service.core.tokens import api_key_or_owner, bearer


class Downloads:
    def __init__(self, store: UploadStore, token_secret: str, api_key: str | None) -> None:
        self.store = store
        self.token_secret = token_secret
        self.api_key = api_key

    async def endpoint(self, request: Request) -> Response:
        token = bearer(request.headers.get("authorization"))
        upload_id = request.path_params["upload_id"]
        # Credentials first: without them, a missing and an existing upload look alike.
        owner = api_key_or_owner(token, self.api_key, self.token_secret)
        if not is_safe_id(upload_id):
            raise NotFound("no such upload")
        try:
            info = await self.store.get(upload_id)
        except (UploadNotFound, UploadGone):
            raise NotFound(f"upload {upload_id} not found") from None
        if owner is not None and owner != info.owner:
            raise NotFound(f"upload {upload_id} not found")
        return self.respond(request, info)

    def respond(self, request: Request, info: UploadInfo) -> Response:
        # Unfinished bytes are never served: they may still change or be rolled back.
        if not info.finished:
            raise NotFound(f"upload {info.id} is not finished")
        size = info.offset
        start, end = 0, size
        status = 200
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": attachment(info.metadata.get("filename"), info.id),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        range_header = request.headers.get("range")
        if range_header:
            parsed = parse_range(range_header, size)
            if parsed is None:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(
            self.store.open_range(info.id, start, end), status_code=status, headers=headers
        )


def attachment(filename: str | None, upload_id: str) -> str:
    """`attachment` with the uploader's file name made safe: its last path part, in
    plain ASCII for `filename=` and percent-encoded UTF-8 for `filename*=`."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip(" .")
    name = "".join(c for c in name if c.isprintable())[:200] or f"upload-{upload_id}"
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._- ") else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One `bytes=` range as [start, end), or None when it cannot be satisfied."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return None
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return None
    return start, min(end, size)
