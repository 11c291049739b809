"""Failures the client cannot fix: a readable answer and a request id to quote."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
from conftest import free_port

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.store import MemoryStore
from upload_service.core.store.base import UploadInfo
from upload_service.http.app import create_app
from upload_service.http.services import Services

pytestmark = pytest.mark.anyio
TUS = {"Tus-Resumable": "1.0.0"}


class BrokenStore(MemoryStore):
    async def get(self, upload_id: str) -> UploadInfo:
        raise RuntimeError("disk on fire")


async def test_redis_down_is_a_503_that_says_so(
    settings: Settings, make_token: Callable[..., str]
) -> None:
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(dead, Services.from_settings(dead, jobs=MemoryJobQueue()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        r = await client.post(
            "/files/",
            headers={**TUS, "Upload-Length": "5", "Authorization": f"Bearer {make_token()}"},
        )
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "unavailable"
    assert "Redis" in r.json()["error"]["message"]


async def test_an_internal_error_quotes_the_request_id(
    settings: Settings, make_token: Callable[..., str]
) -> None:
    services = Services.from_settings(settings, jobs=MemoryJobQueue(), store=BrokenStore())
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get(
            "/files/some-id",
            headers={"Authorization": f"Bearer {make_token()}", "X-Request-ID": "req-4242"},
        )
    assert r.status_code == 500
    assert r.json()["error"] == {
        "code": "internal_error",
        "message": "internal error; quote request id req-4242",
    }
    await services.aclose()
