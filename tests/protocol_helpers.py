"""Helpers of the protocol tests: tus headers, requests, error-body checks."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.http.app import create_app
from upload_service.http.services import Services

Token = Callable[..., str]
EXTENSIONS = {
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
}
OCTETS = "application/offset+octet-stream"


def tus(token: str | None, **extra: str) -> dict[str, str]:
    headers = {"Tus-Resumable": "1.0.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def create(
    client: httpx.AsyncClient, token: str, length: int | None = 10, **extra: str
) -> str:
    headers = tus(token, **extra)
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    response = await client.post("/files/", headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


async def patch(
    client: httpx.AsyncClient, token: str, upload_id: str, offset: int, body: bytes, **extra: str
) -> httpx.Response:
    headers = tus(token, Upload_Offset=str(offset), Content_Type=OCTETS, **extra)
    return await client.patch(f"/files/{upload_id}", headers=headers, content=body)


def stored_ids(settings: Settings) -> list[str]:
    if not settings.uploads_dir.exists():
        return []
    return [p.name for p in settings.uploads_dir.iterdir() if not p.name.endswith(".info")]


@asynccontextmanager
async def app_client(
    settings: Settings, jobs: MemoryJobQueue | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app with real stores and Redis, and a recording job queue.

    `overrides` replace parts of Services (a store, a media source) by name."""
    services = Services.from_settings(settings, jobs=jobs or MemoryJobQueue(), **overrides)
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c
    await app.state.hooks.aclose()  # as the lifespan does: offsets waiting are recorded
    await services.aclose()
