"""Helpers of the status API tests: the API key header, an upload made through tus."""

from __future__ import annotations

import httpx
from pipeline_helpers import tus_metadata


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def create(client: httpx.AsyncClient, token: str, body: bytes = b"", length: int = 10) -> str:
    headers = {
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(length),
        "Upload-Metadata": tus_metadata(filename="lesson.mp4"),
        **bearer(token),
    }
    if body:
        headers["Content-Type"] = "application/offset+octet-stream"
    response = await client.post("/files/", headers=headers, content=body)
    assert response.status_code == 201, response.text
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
