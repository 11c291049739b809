"""One id rule on every route and at every path join: hostile ids get a 4xx, never a file.

Each hostile id is sent percent-encoded, character by character, so that the
application sees it exactly (`..`, `/`, NUL and all): no client or server
normalisation between the test and the route.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import API_KEY, LiveServer
from protocol_helpers import OCTETS

from processors.publish import LocalPublisher
from processors.workdir import job_dir
from upload_service.core.ids import UnsafeId, is_safe_id, new_upload_id, safe_child
from upload_service.core.redis_commands import RedisCommands
from upload_service.core.settings import Settings
from upload_service.core.status import StatusReader, StatusStore
from upload_service.core.store import LocalStore
from upload_service.core.store.base import UploadNotFound
from upload_service.core.webhook_log import WebhookLog

HOSTILE_IDS = [
    "..",
    "../../etc/passwd",
    "%2e%2e",
    "a%2Fb",
    "/etc/passwd",
    "a\x00b",
    "a" * 129,
    "é",
    "",
    "id\n",  # "$" in a regex also matches before a final newline
    "../secret",
    "../../planted",
]
PLANTED = "PLANTED-SECRET-7f3a"


def encoded(upload_id: str) -> str:
    """Every byte but letters and digits percent-encoded: the route sees `upload_id` itself."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02X}" for b in upload_id.encode()
    )


def requests_for(upload_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, extra headers) of every route that takes an upload id.

    Not OPTIONS: tus discovery answers the same for any path, and reads nothing.
    """
    enc = encoded(upload_id)
    tus = {"Tus-Resumable": "1.0.0"}
    return [
        ("GET", f"/files/{enc}", {}),
        ("HEAD", f"/files/{enc}", {}),
        ("HEAD", f"/files/{enc}", tus),
        ("PATCH", f"/files/{enc}", {**tus, "Upload-Offset": "0", "Content-Type": OCTETS}),
        ("DELETE", f"/files/{enc}", tus),
        ("GET", f"/v1/uploads/{enc}", {}),
        ("GET", f"/v1/uploads?ids={enc}", {}),
        ("GET", f"/v1/uploads/{enc}/events", {}),
        ("POST", f"/v1/uploads/{enc}/events/msg_1/resend", {}),
        ("GET", f"/media/{enc}/hls/master.m3u8", {}),
        ("HEAD", f"/media/{enc}/poster.jpg", {}),
        ("GET", f"/media/{enc}/planted.json", {}),
    ]


def plant(settings: Settings) -> None:
    """JSON files outside the status dir, readable by the server, owned by the caller."""
    record = json.dumps({"id": "x", "owner": "user-1", "secret": PLANTED})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "secret.json").write_text(record)
    (settings.data_dir.parent / "planted.json").write_text(record)
    (settings.data_dir.parent / "planted.jsonl").write_text(record)
    (settings.media_dir / "x").mkdir(parents=True, exist_ok=True)
    (settings.media_dir / "x" / "planted.json").write_text(record)


@pytest.mark.anyio
@pytest.mark.parametrize("who", ["api key", "token"])
@pytest.mark.parametrize("upload_id", HOSTILE_IDS, ids=repr)
async def test_hostile_id_gets_4xx_on_every_route(
    client: httpx.AsyncClient,
    settings: Settings,
    make_token: Callable[..., str],
    who: str,
    upload_id: str,
) -> None:
    plant(settings)
    secret = API_KEY if who == "api key" else make_token("user-1")
    auth = {"Authorization": f"Bearer {secret}"}
    for method, path, headers in requests_for(upload_id):
        response = await client.request(
            method, path, headers={**auth, **headers}, follow_redirects=True
        )
        where = f"{method} {path} ({who})"
        assert 400 <= response.status_code < 500, (where, response.status_code, response.text)
        assert PLANTED not in response.text, where
        if path.startswith("/v1/uploads?ids="):
            assert response.status_code == 400, where


@pytest.mark.anyio
async def test_one_hostile_id_spoils_the_batch(
    client: httpx.AsyncClient, make_token: Callable[..., str], settings: Settings
) -> None:
    plant(settings)
    owner = make_token("user-1")
    created = await client.post(
        "/files/",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "3",
            "Authorization": f"Bearer {owner}",
        },
    )
    good = created.headers["location"].rsplit("/", 1)[-1]
    for secret in (API_KEY, owner):
        auth = {"Authorization": f"Bearer {secret}"}
        fine = await client.get(f"/v1/uploads?ids={good}", headers=auth)
        assert [u["id"] for u in fine.json()["uploads"]] == [good]
        spoiled = await client.get(f"/v1/uploads?ids={good},{encoded('../secret')}", headers=auth)
        assert spoiled.status_code == 400 and PLANTED not in spoiled.text


def test_raw_request_lines_against_the_live_server(
    live_server: LiveServer, settings: Settings
) -> None:
    """What a browser or proxy would never send, as bytes on the wire to real uvicorn."""
    plant(settings)
    paths = [
        "/media/../secret.json",
        "/media/%2e%2e/secret.json",
        "/media/x/../../secret.json",
        "/media/x/%2e%2e/%2e%2e/secret.json",
        "/media/x/..%2f..%2fsecret.json",
        "/v1/uploads/..%2fsecret",
        "/v1/uploads?ids=../secret",
        "/files/..%2f..%2fplanted",
    ]
    for path in paths:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Connection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
            sock.sendall(request.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, (path, answer[:300])
        assert PLANTED.encode() not in answer, path


# -- defence in depth: every join of an id onto a directory ------------------------------


@pytest.mark.parametrize("upload_id", HOSTILE_IDS, ids=repr)
def test_safe_child_refuses_every_hostile_id(tmp_path: Path, upload_id: str) -> None:
    assert not is_safe_id(upload_id)
    with pytest.raises(UnsafeId):
        safe_child(tmp_path, upload_id)
    with pytest.raises(ValueError):  # UnsafeId is a ValueError, for callers that want one
        safe_child(tmp_path, upload_id, ".json")


def test_safe_child_joins_a_real_id(tmp_path: Path) -> None:
    assert safe_child(tmp_path, "Ab_9-x", ".json") == tmp_path / "Ab_9-x.json"
    assert is_safe_id("a" * 128) and not is_safe_id("a" * 129)


@pytest.mark.parametrize("upload_id", HOSTILE_IDS, ids=repr)
def test_every_path_join_refuses_a_hostile_id(
    settings: Settings, tmp_path: Path, upload_id: str
) -> None:
    plant(settings)
    status = StatusStore(settings.status_dir, None)
    with pytest.raises(UnsafeId):
        status.get(upload_id)
    with pytest.raises(UnsafeId):
        status.put({"id": upload_id, "owner": "user-1"})
    with pytest.raises(UnsafeId), job_dir(settings.work_dir, upload_id):
        pass
    publisher = LocalPublisher(settings.media_dir)
    source = tmp_path / "f.jpg"
    source.write_bytes(b"x")
    with pytest.raises(UnsafeId):
        publisher.publish(upload_id, [(source, "poster.jpg")], lambda p: None)
    with pytest.raises(KeyError):
        WebhookLog(settings.data_dir / "webhooks").path(upload_id)

    store = LocalStore(settings.uploads_dir)
    with pytest.raises(UploadNotFound):
        asyncio.run(store.get(upload_id))
    with pytest.raises(UploadNotFound):
        store.path(upload_id)
    # The planted files are where they were, untouched.
    assert PLANTED in (settings.data_dir / "secret.json").read_text()
    assert (settings.data_dir.parent / "planted.json").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("upload_id", HOSTILE_IDS, ids=repr)
async def test_status_reader_finds_nothing_for_a_hostile_id(
    settings: Settings, upload_id: str
) -> None:
    from redis.asyncio import Redis as AsyncRedis

    plant(settings)
    redis = AsyncRedis.from_url(settings.redis_url)
    try:
        reader = StatusReader(settings.status_dir, RedisCommands(redis))
        assert await reader.get_raw(upload_id) is None
        assert await reader.get_many_raw([upload_id]) == []
    finally:
        await redis.aclose()


def test_made_ids_never_start_with_a_dash() -> None:
    # An id is often an argument on a command line (the Django reconcile command,
    # scripts), where "-abc..." reads as an option: one in 64 random ids would.
    made = [new_upload_id() for _ in range(3000)]
    assert all(is_safe_id(i) and len(i) == 22 and not i.startswith("-") for i in made)
    assert len(set(made)) == len(made)
