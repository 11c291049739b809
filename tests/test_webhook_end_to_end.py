"""Webhooks on the whole path (server -> Redis -> worker -> receiver) and their delivery log.

A real uvicorn server and a worker (in-process, or `upload-service worker` as
a process) deliver an upload's events signed to a real HTTP receiver on
loopback; the events API lists and resends them from the delivery log.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import API_KEY, LiveServer, RedisServer, settings_env
from media_helpers import make_video
from webhook_helpers import (
    SECRET,
    Harness,
    Receiver,
    start_harness,
    std_verify,
    wait_until,
    webhook_settings,
)

from client_sdk import verify_webhook
from upload_service.core.settings import Settings
from upload_service.core.webhook_log import WebhookLog

pytestmark = pytest.mark.one_path


@pytest.fixture
def wh_settings(settings: Settings, redis_server: RedisServer, receiver: Receiver) -> Settings:
    return webhook_settings(settings, redis_server.port, receiver)


@pytest.fixture
def harness(wh_settings: Settings, receiver: Receiver) -> Iterator[Harness]:
    yield from start_harness(wh_settings, receiver)


# --- the whole path: server -> Redis -> worker -> receiver ---------------------------


@pytest.mark.e2e
def test_processed_upload_events_arrive_signed_and_can_be_listed_and_resent(
    harness: Harness, receiver: Receiver, wh_settings: Settings, make_token
) -> None:
    server = LiveServer(wh_settings).start()
    try:
        token = make_token("user-1", meta={"course_id": 12})
        data = b"not really media, but bytes all the same" * 100
        created = httpx.post(
            f"{server.url}/files/",
            content=data,
            headers={
                "Authorization": f"Bearer {token}",
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert created.status_code == 201, created.text
        upload_id = created.headers["location"].rstrip("/").rsplit("/", 1)[-1]

        wait_until(lambda: len(receiver.requests) >= 2, what="two webhooks")
        harness.drain()
        by_type = {}
        for request in receiver.requests:
            payload = std_verify(request.headers, request.body)
            assert verify_webhook(SECRET, request.headers, request.body) == payload
            assert payload["data"]["id"] == upload_id
            assert payload["data"]["meta"] == {"course_id": 12}
            by_type[payload["type"]] = (request.headers["webhook-id"], payload)
        assert {"upload.created", "upload.completed"} <= set(by_type)
        assert by_type["upload.completed"][1]["data"]["state"] == "uploaded"

        api = {"Authorization": f"Bearer {API_KEY}"}
        listed = httpx.get(f"{server.url}/v1/uploads/{upload_id}/events", headers=api)
        assert listed.status_code == 200
        events = {e["type"]: e for e in listed.json()["events"]}
        completed = events["upload.completed"]
        assert completed["id"] == by_type["upload.completed"][0]
        assert completed["delivered"] is True
        assert [(a["attempt"], a["status"]) for a in completed["attempts"]] == [(1, 200)]
        owner = {"Authorization": f"Bearer {token}"}
        assert (
            httpx.get(f"{server.url}/v1/uploads/{upload_id}/events", headers=owner).status_code
            == 401
        )

        resend_url = f"{server.url}/v1/uploads/{upload_id}/events/{completed['id']}/resend"
        assert httpx.post(resend_url, headers=owner).status_code == 401
        resent = httpx.post(resend_url, headers=api)
        assert resent.status_code == 202 and resent.json()["attempt"] == 2
        wait_until(lambda: len(receiver.requests) >= 3, what="the resent webhook")
        harness.drain()
        again = receiver.requests[-1]
        assert again.headers["webhook-id"] == completed["id"]
        assert std_verify(again.headers, again.body) == by_type["upload.completed"][1]
        history = httpx.get(f"{server.url}/v1/uploads/{upload_id}/events", headers=api).json()
        attempts = next(e for e in history["events"] if e["id"] == completed["id"])["attempts"]
        assert [(a["attempt"], a["outcome"]) for a in attempts] == [
            (1, "delivered"),
            (2, "delivered"),
        ]

        missing = httpx.post(
            f"{server.url}/v1/uploads/{upload_id}/events/msg_nope/resend", headers=api
        )
        assert missing.status_code == 404
        assert httpx.get(f"{server.url}/v1/uploads/nope/events", headers=api).status_code == 404
    finally:
        server.stop()


def tus_upload(server_url: str, token: str, data: bytes, filename: str) -> str:
    created = httpx.post(
        f"{server_url}/files/",
        content=data,
        headers={
            "Authorization": f"Bearer {token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename " + base64.b64encode(filename.encode()).decode(),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert created.status_code == 201, created.text
    return created.headers["location"].rstrip("/").rsplit("/", 1)[-1]


@pytest.mark.slow
def test_real_worker_delivers_every_pipeline_event(
    receiver: Receiver, wh_settings: Settings, make_token, tmp_path: Path
) -> None:
    """`upload-service worker` as a process: the pipeline's events come out signed too."""
    env = settings_env(wh_settings) | {
        "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2",
        "WEBHOOK_TIMEOUT": "5",
        "TRANSCRIBE": "false",
        "PROCESS_MAX_RETRIES": "0",
    }
    receiver.script = [("status", 503, {"Retry-After": "0"})]  # one failure on the way
    server = LiveServer(wh_settings).start()
    with open(tmp_path / "worker.log", "wb") as worker_log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "upload_service.cli", "worker", "--processes", "1"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    try:
        token = make_token("user-1")
        video = make_video(tmp_path / "clip.mp4", seconds=1, size="160x90")
        good = tus_upload(server.url, token, video.read_bytes(), "clip.mp4")
        bad = tus_upload(server.url, token, b"this is not a video\n" * 50, "notes.mp4")

        def final_events() -> set[tuple[str, str]]:
            seen = set()
            for request in list(receiver.requests):
                payload = std_verify(request.headers, request.body)
                seen.add((payload["data"]["id"], payload["type"]))
            return {e for e in seen if e[1].startswith("media.")}

        wait_until(lambda: len(final_events()) >= 3, timeout=120, what="media.* webhooks")
        assert final_events() == {
            (good, "media.playable"),
            (good, "media.ready"),
            (bad, "media.failed"),
        }
        received = {
            (std_verify(r.headers, r.body)["data"]["id"], std_verify(r.headers, r.body)["type"])
            for r in receiver.requests
        }
        for upload_id in (good, bad):
            assert {(upload_id, "upload.created"), (upload_id, "upload.completed")} <= received
        ids = receiver.ids()
        assert len(ids) == len(set(ids)) + 1, "the one failed attempt was retried, same id"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.stop()


@pytest.mark.anyio
async def test_resend_without_webhook_url_is_refused(client: httpx.AsyncClient) -> None:
    api = {"Authorization": f"Bearer {API_KEY}"}
    answer = await client.post("/v1/uploads/x/events/msg_1/resend", headers=api)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "webhooks_disabled"
    assert (await client.get("/v1/uploads/x/events")).status_code == 401


def test_event_log_survives_and_reads_back_after_a_torn_line(wh_settings: Settings) -> None:
    log = WebhookLog(wh_settings.data_dir / "webhooks")
    event = {"id": "msg_1", "type": "upload.created", "timestamp": "t", "data": {"id": "u1"}}
    log.record_event(event)
    log.record_event(event)  # once only
    log.record_attempt("u1", {"event_id": "msg_1", "type": "upload.created", "attempt": 1})
    with open(log.path("u1"), "ab") as f:
        f.write(b'{"kind": "attempt", "event_')  # a crash mid-append
    [entry] = log.history("u1")
    assert entry["data"] == {"id": "u1"} and len(entry["attempts"]) == 1
    assert json.loads(log.path("u1").read_text().splitlines()[0])["kind"] == "event"
