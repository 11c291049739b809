"""The polling reference: a bare Starlette app answering a status-sized JSON document."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

RECORD = {
    "id": "x" * 22,
    "owner": "bench-user",
    "state": "uploading",
    "offset": 0,
    "length": 1048576,
    "metadata": {"filename": "lecture.mp4", "filetype": "video/mp4"},
    "meta": {},
    "progress": None,
    "media": None,
    "outputs": {},
    "error": None,
    "created_at": "2026-11-28T17:00:00.000000Z",
    "updated_at": "2026-11-28T17:00:00.000000Z",
}


async def status(request: Request) -> JSONResponse:
    return JSONResponse(RECORD)


app = Starlette(routes=[Route("/v1/uploads/{upload_id}", status)])
