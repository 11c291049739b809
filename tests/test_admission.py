"""A burst of creations and PATCHes is let in a few at a time (TusConfig.admitted), so
that the event loop keeps turning for HEADs; the gate never holds a HEAD back."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from tus_helpers import create, head, tus

import upload_service.http.app as app_module
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.store.base import UploadInfo
from upload_service.core.store.local import LocalStore
from upload_service.http.app import create_app
from upload_service.http.services import Services

pytestmark = pytest.mark.anyio


class GatedStore(LocalStore):
    """A local store whose creations wait for `gate`, counting how many wait at once."""

    def __init__(self, directory: Any) -> None:
        super().__init__(directory)
        self.gate: anyio.Event | None = None
        self.inside = 0
        self.most_inside = 0
        self.two_inside = anyio.Event()

    async def create(self, info: UploadInfo) -> None:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        if self.inside >= 2:
            self.two_inside.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            await super().create(info)
        finally:
            self.inside -= 1


async def test_a_burst_of_creations_is_let_in_a_few_at_a_time_while_heads_pass(
    settings: Settings, make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "LOCAL_ADMITTED", 2)
    store = GatedStore(settings.uploads_dir)
    services = Services.from_settings(settings, jobs=MemoryJobQueue(), store=store)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    token = make_token()
    statuses: list[int] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        existing = await create(c, token, 10)

        async def post() -> None:
            r = await c.post("/files/", headers=tus(token, **{"Upload-Length": "10"}))
            statuses.append(r.status_code)

        store.gate = anyio.Event()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(post)
                await store.two_inside.wait()
                await anyio.sleep(0.2)  # every chance for a third to get in
                assert store.inside == 2
                assert (await head(c, token, existing)).status_code == 200  # not gated
                store.gate.set()
    await services.aclose()
    assert statuses == [201] * 6
    assert store.most_inside == 2
