"""The fast protocol's body buffer keeps uvicorn's semantics (bodies intact, reading
paused while too much waits), and a Redis pool that waits instead of failing under
many concurrent status reads. (Speed itself is measured in bench/.)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio
import httpx
import pytest
from conftest import API_KEY
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_helpers import connected, request_head

from upload_service.fastpath.protocol import HIGH_WATER, UploadHttpToolsProtocol

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("protocol_class", [HttpToolsProtocol, UploadHttpToolsProtocol])
async def test_the_protocol_delivers_the_body_intact_and_stops_reading_while_too_much_waits(
    protocol_class: type[HttpToolsProtocol],
) -> None:
    """The fast protocol's body buffer, held to uvicorn's own protocol's behaviour."""

    received: list[bytes] = []
    go_on = asyncio.Event()
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await go_on.wait()  # the application is busy: the body waits for it
        more = True
        while more:
            message = await receive()
            received.append(message["body"])
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        done.set()

    protocol, transport = connected(app, protocol_class)
    body = os.urandom(3 * HIGH_WATER)
    protocol.data_received(request_head("PATCH", "/files/x", len(body)) + body[:HIGH_WATER])
    assert transport.reading
    protocol.data_received(body[HIGH_WATER : 2 * HIGH_WATER + 1])
    # More than HIGH_WATER waits for the application: the socket is not read.
    assert not transport.reading
    go_on.set()
    with anyio.fail_after(5):
        while not transport.reading:  # noqa: ASYNC110 (the transport has no event)
            await asyncio.sleep(0.01)
    protocol.data_received(body[2 * HIGH_WATER + 1 :])
    with anyio.fail_after(5):
        await done.wait()
    assert b"".join(received) == body
    assert transport.written.startswith(b"HTTP/1.1 204")


async def test_many_concurrent_status_reads_wait_for_a_redis_connection_instead_of_failing(
    client: httpx.AsyncClient, make_token: Any
) -> None:
    token = make_token()
    created = await client.post(
        "/files/",
        headers={
            "Tus-Resumable": "1.0.0",
            "Authorization": f"Bearer {token}",
            "Upload-Length": "5",
        },
    )
    assert created.status_code == 201
    upload_id = created.headers["location"].rsplit("/", 1)[1]

    async def read() -> int:
        r = await client.get(
            f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        return r.status_code

    # More than redis-py's default pool of 100 connections, all at once.
    statuses = await asyncio.gather(*(read() for _ in range(150)))
    assert set(statuses) == {200}
