"""An upload's offset in its status record while bytes arrive (core.progress_pace):
recorded at once when nothing was recorded for it within UPLOAD_PROGRESS_INTERVAL,
otherwise late, once the upload has had no append for that long; never over a
completion, and at once when an append breaks off."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest
from conftest import API_KEY
from protocol_helpers import OCTETS, app_client, create, patch, tus

from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio


def paced(settings: Settings, interval: float) -> Settings:
    return dataclasses.replace(settings, progress_interval=interval)


async def status_of(client: httpx.AsyncClient, upload_id: str) -> dict:
    response = await client.get(
        f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200
    return response.json()


async def offset_recorded(client: httpx.AsyncClient, upload_id: str, offset: int) -> None:
    """Poll the status API until it shows `offset` (what a backend does)."""
    for _ in range(400):
        if (await status_of(client, upload_id))["offset"] == offset:
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"the status never showed offset {offset}")


async def three_appends(client: httpx.AsyncClient, token: str) -> str:
    """A new upload of 100 bytes, and three appends of 10 in a row; its id."""
    upload_id = await create(client, token, 100)
    for offset in (0, 10, 20):
        assert (await patch(client, token, upload_id, offset, b"x" * 10)).status_code == 204
    return upload_id


async def test_a_burst_of_appends_is_recorded_once_then_at_its_last_offset(
    settings: Settings, make_token: Callable[..., str]
) -> None:
    token = make_token()
    async with app_client(paced(settings, 30)) as client:
        upload_id = await three_appends(client, token)
        # The first append was recorded at once; the two after it wait for the pace.
        status = await status_of(client, upload_id)
        assert (status["state"], status["offset"]) == ("uploading", 10)
        assert status["progress"]["percent"] == 10.0
        await client.app.state.hooks.aclose()  # type: ignore[attr-defined]  # a shutdown
        status = await status_of(client, upload_id)
        assert (status["offset"], status["progress"]["percent"]) == (30, 30.0)


async def test_an_upload_that_pauses_shows_its_last_offset_an_interval_later(
    settings: Settings, make_token: Callable[..., str]
) -> None:
    token = make_token()
    async with app_client(paced(settings, 0.2)) as client:
        upload_id = await three_appends(client, token)
        await offset_recorded(client, upload_id, 30)  # with no append, and no shutdown


async def test_a_late_offset_never_takes_back_a_completion_made_elsewhere(
    settings: Settings, make_token: Callable[..., str]
) -> None:
    """Two server processes (two apps on one Redis and one data dir): the first has an
    offset waiting when the second completes the upload; the first's late write finds
    the record moved on and leaves it, in the state and in the cache."""
    token = make_token()
    async with app_client(paced(settings, 0.2)) as first, app_client(settings) as second:
        upload_id = await create(first, token, 30)
        for offset in (0, 10):
            assert (await patch(first, token, upload_id, offset, b"x" * 10)).status_code == 204
        assert (await patch(second, token, upload_id, 20, b"x" * 10)).status_code == 204
        await first.app.state.hooks.aclose()  # type: ignore[attr-defined]  # its late write
        for client in (first, second):
            status = await status_of(client, upload_id)
            assert (status["state"], status["offset"]) == ("uploaded", 30)
        stored = first.app.state.services.status.records.read(upload_id)  # type: ignore[attr-defined]
        assert b'"state":"uploaded"' in stored


async def test_an_append_that_breaks_off_is_recorded_at_once(
    settings: Settings, make_token: Callable[..., str]
) -> None:
    """A stall answers 408 with the offset to resume from; the status says the same
    at once, though an append was recorded a moment before."""
    token = make_token()
    stalling = dataclasses.replace(paced(settings, 30), body_timeout=0.3)
    async with app_client(stalling) as client:
        upload_id = await create(client, token, 100)
        assert (await patch(client, token, upload_id, 0, b"x" * 10)).status_code == 204

        async def stalls_after_five_bytes() -> AsyncIterator[bytes]:
            yield b"y" * 5
            await anyio.sleep(30)
            yield b""  # pragma: no cover

        headers = tus(token, Upload_Offset="10", Content_Type=OCTETS)
        response = await client.patch(
            f"/files/{upload_id}", headers=headers, content=stalls_after_five_bytes()
        )
        assert response.status_code == 408 and response.headers["upload-offset"] == "15"
        assert (await status_of(client, upload_id))["offset"] == 15
