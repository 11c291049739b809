"""UPLOAD_FAST_PATH chooses, in one place, the protocol uvicorn serves with and the body
the stores read: on, the fast protocol offers to splice large bodies into files; off,
uvicorn's own protocol (with bounded heads) and `request.stream()`, and uploads
conform either way."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import os
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LiveServer
from tus_helpers import checksum
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_helpers import connected, request_head

from upload_service.core.settings import Settings
from upload_service.fastpath.body import SplicingBody
from upload_service.fastpath.protocol import UploadHttpToolsProtocol
from upload_service.fastpath.splice import BODY_TO_FILE
from upload_service.http.body_path import body_path
from upload_service.http.head_limits import BoundedHttpToolsProtocol, HeadLimits
from upload_service.http.lingering_close import LingeringHttpToolsProtocol
from upload_service.http.tus.body import RequestBody

pytestmark = [pytest.mark.anyio, pytest.mark.one_path]
MIB = 1024 * 1024


async def served_by(http: str) -> tuple[Any, dict[str, Any]]:
    """The protocol uvicorn makes for `http`, and the ASGI scope it gives a large PATCH."""
    scopes: list[dict[str, Any]] = []
    called = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        called.set()

    protocol, _ = connected(app, http)
    protocol.data_received(request_head("PATCH", "/files/x", 4 * MIB))
    await asyncio.wait_for(called.wait(), 5)
    return protocol, scopes[0]


async def test_off_serves_with_uvicorns_own_protocol_and_the_stock_body(
    settings: Settings,
) -> None:
    path = body_path(dataclasses.replace(settings, fast_path=False))
    assert path.make_body is RequestBody
    protocol, scope = await served_by(path.http_protocol)
    # uvicorn's own, with bounded request heads, a lingering close and nothing of
    # the fast path
    assert type(protocol) is BoundedHttpToolsProtocol
    assert type(protocol).__mro__[1:] == (
        HeadLimits,
        LingeringHttpToolsProtocol,
        *HttpToolsProtocol.__mro__,
    )
    assert BODY_TO_FILE not in scope.get("extensions", {})


async def test_on_serves_with_the_fast_protocol_which_offers_to_splice(
    settings: Settings,
) -> None:
    path = body_path(dataclasses.replace(settings, fast_path=True))
    assert path.make_body is SplicingBody
    protocol, scope = await served_by(path.http_protocol)
    assert isinstance(protocol, UploadHttpToolsProtocol)
    assert BODY_TO_FILE in scope["extensions"]


def spliced_bytes(server: LiveServer) -> float:
    metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    found = re.search(r"^upload_bytes_spliced_total (\S+)$", metrics, re.M)
    assert found
    return float(found.group(1))


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_uploads_land_whole_either_way_and_only_on_is_spliced(
    server_factory: Callable[..., LiveServer], make_token: Callable[..., str], fast_path: str
) -> None:
    server = server_factory(UPLOAD_FAST_PATH=fast_path)
    token = make_token()
    plain, checksummed = os.urandom(2 * MIB + 7), os.urandom(MIB)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    tus = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    conn.request("POST", "/files/", headers={**tus, "Upload-Length": str(3 * MIB + 7)})
    created = conn.getresponse()
    created.read()
    upload_id = created.headers["Location"].rsplit("/", 1)[-1]
    offset = 0
    for body, extra in (
        (plain, {}),
        (checksummed, {"Upload-Checksum": checksum("sha1", checksummed)}),
    ):
        headers = {
            **tus,
            **extra,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        }
        conn.request("PATCH", f"/files/{upload_id}", body, headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 204
        offset += len(body)
        assert response.headers["Upload-Offset"] == str(offset)
    conn.close()
    assert (server.settings.uploads_dir / upload_id).read_bytes() == plain + checksummed
    if fast_path == "on":
        # The plain body went socket to file; the checksummed one through the loop.
        assert 0 < spliced_bytes(server) <= len(plain)
    else:
        assert spliced_bytes(server) == 0
