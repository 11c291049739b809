"""The IETF resumable-upload draft on the tus endpoints: discovery and interop versions.

Through the ASGI app: what OPTIONS advertises, which Upload-Draft-Interop-Version
values are refused, and the header names of the older versions still served.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from ietf_draft_helpers import (
    PARTIAL,
    content_of,
    draft,
    upload_id_of,
)

from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio

# -- discovery ----------------------------------------------------------------------


async def test_options_advertises_partial_upload_and_limits(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    r = await client.options("/files/", headers=draft(None))
    assert r.status_code == 204
    assert r.headers["accept-patch"] == PARTIAL
    assert r.headers["upload-limit"] == f"max-size={settings.max_size}"


@pytest.mark.parametrize("version", ["2", "9", "seven", ""])
async def test_unsupported_interop_version_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str], version: str
) -> None:
    r = await client.post(
        "/files/",
        headers={
            "Authorization": f"Bearer {make_token()}",
            "Upload-Draft-Interop-Version": version,
            "Upload-Complete": "?1",
        },
    )
    assert r.status_code == 400, r.text
    assert "Upload-Draft-Interop-Version" in r.json()["error"]["message"]


# -- older interop versions -------------------------------------------------------


async def test_interop_version_3_uses_upload_incomplete(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token()
    r = await client.post(
        "/files/", content=b"first", headers=draft(token, 3, **{"Upload-Incomplete": "?1"})
    )
    assert r.status_code == 201, r.text
    assert r.headers["upload-incomplete"] == "?1"
    assert "upload-limit" not in r.headers
    upload_id = upload_id_of(r)
    r = await client.patch(
        f"/files/{upload_id}",
        content=b"-last",
        headers=draft(token, 3, **{"Upload-Offset": "5", "Upload-Incomplete": "?0"}),
    )
    assert r.status_code == 204, r.text
    assert r.headers["upload-incomplete"] == "?0"
    assert await content_of(client, upload_id) == b"first-last"


async def test_interop_version_6_names_the_lifetime_expires(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    r = await client.post("/files/", headers=draft(make_token(), 6, **{"Upload-Complete": "?0"}))
    assert "expires=" in r.headers["upload-limit"]
    assert "max-age" not in r.headers["upload-limit"]
