"""Helpers of the IETF resumable-upload draft tests: draft headers and the requests they send."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import API_KEY

from upload_service.core.jobs import MemoryJobQueue

PARTIAL = "application/partial-upload"


def draft(token: str | None, *version: int, **extra: str) -> dict[str, str]:
    """Draft request headers; `version` (default 8) is positional so that headers cannot clash."""
    headers = {"Upload-Draft-Interop-Version": str(version[0] if version else 8), **extra}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def upload_id_of(response: httpx.Response) -> str:
    return response.headers["location"].rsplit("/", 1)[-1]


async def append(
    client: httpx.AsyncClient,
    token: str,
    upload_id: str,
    offset: int,
    data: bytes,
    complete: bool,
    version: int = 8,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    headers = draft(
        token,
        version,
        **{
            "Upload-Offset": str(offset),
            "Upload-Complete": "?1" if complete else "?0",
            "Content-Type": PARTIAL,
            **(extra or {}),
        },
    )
    return await client.patch(f"/files/{upload_id}", content=data, headers=headers)


async def offset_of(client: httpx.AsyncClient, token: str, upload_id: str) -> httpx.Response:
    return await client.head(f"/files/{upload_id}", headers=draft(token))


async def content_of(client: httpx.AsyncClient, upload_id: str) -> bytes:
    r = await client.get(f"/files/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return r.content


async def status_of(client: httpx.AsyncClient, upload_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()


def processed(jobs: MemoryJobQueue) -> list[str]:
    return [args[0] for actor, args in jobs.sent if actor == "process_upload"]
