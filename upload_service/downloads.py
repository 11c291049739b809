"""GET /files/{id}: a finished upload's bytes, for its owner or the backend, with Range."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .auth import bearer, decode_token, is_api_key
from .errors import NotFound
from .ids import is_safe_id
from .store.base import UploadGone, UploadInfo, UploadNotFound, UploadStore


class Downloads:
    def __init__(self, store: UploadStore, token_secret: str, api_key: str | None) -> None:
        self.store = store
        self.token_secret = token_secret
        self.api_key = api_key

    async def endpoint(self, request: Request) -> Response:
        token = bearer(request.headers.get("authorization"))
        upload_id = request.path_params["upload_id"]
        # Credentials first: without them, a missing and an existing upload look alike.
        owner = (
            None if is_api_key(token, self.api_key) else decode_token(token, self.token_secret).sub
        )
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
            "X-Content-Type-Options": "nosniff",
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
        filename = info.metadata.get("filename")
        if filename:
            safe = "".join(c for c in filename if c.isprintable() and c not in '"\\')
            headers["Content-Disposition"] = f'attachment; filename="{safe}"'
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        return StreamingResponse(
            self.store.open_range(info.id, start, end), status_code=status, headers=headers
        )


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
