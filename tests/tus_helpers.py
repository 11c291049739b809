"""Small tus 1.0.0 request helpers shared by the extension and sweeper tests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import httpx

from upload_service.core.settings import Settings

OFFSET_TYPE = "application/offset+octet-stream"
ALGORITHMS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}


def tus(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(ALGORITHMS[algorithm](data).digest()).decode()}"


async def create(
    client: httpx.AsyncClient, token: str, length: int | None = None, **headers: str
) -> str:
    extra = {"Upload-Length": str(length)} if length is not None else {}
    r = await client.post("/files/", headers=tus(token, **extra, **headers))
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[-1]


async def patch(
    client: httpx.AsyncClient, token: str, upload_id: str, offset: int, data: bytes, **headers: str
) -> httpx.Response:
    return await client.patch(
        f"/files/{upload_id}",
        content=data,
        headers=tus(
            token, **{"Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE}, **headers
        ),
    )


async def head(client: httpx.AsyncClient, token: str, upload_id: str) -> httpx.Response:
    return await client.head(f"/files/{upload_id}", headers=tus(token))


async def download(client: httpx.AsyncClient, token: str, upload_id: str) -> bytes:
    r = await client.get(f"/files/{upload_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.content


async def finished_upload(
    client: httpx.AsyncClient, token: str, data: bytes, **headers: str
) -> str:
    upload_id = await create(client, token, len(data), **headers)
    r = await patch(client, token, upload_id, 0, data)
    assert r.status_code == 204, r.text
    return upload_id


def age_upload(settings: Settings, upload_id: str, seconds: float) -> None:
    """Pretend the upload's last change was `seconds` ago (info record and data mtime)."""
    info_path = settings.uploads_dir / f"{upload_id}.info"
    info = json.loads(info_path.read_text())
    past = time.time() - seconds
    info["updated_at"] = info["created_at"] = past
    info_path.write_text(json.dumps(info))
    os.utime(settings.uploads_dir / upload_id, (past, past))
