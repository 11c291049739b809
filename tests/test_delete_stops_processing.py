"""Delete means stop: a DELETE during processing ends the job, and nothing stays published.

A real server, a real worker and a webhook receiver, as the backend sees them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from media_helpers import make_video
from pipeline_helpers import (
    TUS,
    WorkerProcess,
    get_status,
    pipeline_settings,
    upload_file,
    wait_for_state,
)
from webhook_helpers import Receiver, wait_until

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.one_path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def settings_(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, receiver: Receiver
) -> Settings:
    data_dir = tmp_path_factory.mktemp("delete") / "data"
    return pipeline_settings(data_dir, redis_server.url, db=9, receiver=receiver)


@pytest.fixture(scope="module")
def server(settings_: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings_).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def worker(settings_: Settings, server: LiveServer) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings_).start()
    yield process
    process.stop()


def delete(server: LiveServer, token: str, upload_id: str) -> None:
    response = httpx.delete(
        f"{server.url}/files/{upload_id}", headers={**TUS, "Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204, response.text


def ffmpeg_running_for(upload_id: str) -> bool:
    """Any ffmpeg, sandboxed or not, whose command line names the upload."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes()
        except OSError:
            continue
        if command.startswith(b"ffmpeg\0") and upload_id.encode() in command:
            return True
    return False


def event_types(receiver: Receiver, upload_id: str) -> list[str]:
    found = []
    for request in list(receiver.requests):
        event = json.loads(request.body)
        if event["data"]["id"] == upload_id:
            found.append(event["type"])
    return found


def published(settings: Settings, upload_id: str) -> bool:
    return (settings.media_dir / upload_id).exists()


def test_delete_during_transcode_stops_ffmpeg_and_ends_terminated(
    tmp_path: Path,
    receiver: Receiver,
    server: LiveServer,
    worker: WorkerProcess,
    settings_: Settings,
) -> None:
    token = mint_token(TOKEN_SECRET, "user-1")
    clip = make_video(tmp_path / "long.mp4", seconds=40, size="1280x720")
    upload_id = upload_file(server.url, token, clip)
    wait_until(
        lambda: (
            (get_status(server.url, API_KEY, upload_id)["progress"] or {}).get("stage")
            == "transcode"
            and ffmpeg_running_for(upload_id)
        ),
        timeout=60,
        what="the transcode",
    )
    delete(server, token, upload_id)

    wait_until(lambda: not ffmpeg_running_for(upload_id), timeout=30, what="ffmpeg to stop")
    wait_until(
        lambda: f"pipeline.stopped upload_id={upload_id}" in worker.log(),
        what="the job to stop",
    )
    wait_until(
        lambda: f"pipeline.withdrawn upload_id={upload_id}" in worker.log(),
        what="the withdrawal",
    )
    record = get_status(server.url, API_KEY, upload_id)
    assert record["state"] == "terminated"
    assert record["outputs"] == {}
    assert not published(settings_, upload_id)
    assert not (settings_.work_dir / upload_id).exists()
    wait_until(lambda: "upload.terminated" in event_types(receiver, upload_id))
    types = event_types(receiver, upload_id)
    assert "media.ready" not in types and "media.failed" not in types, types


def test_delete_after_ready_unpublishes_everything(
    tmp_path: Path,
    receiver: Receiver,
    server: LiveServer,
    worker: WorkerProcess,
    settings_: Settings,
) -> None:
    token = mint_token(TOKEN_SECRET, "user-2")
    upload_id = upload_file(server.url, token, make_video(tmp_path / "short.mp4", seconds=3))
    ready = wait_for_state(server.url, API_KEY, upload_id, timeout=90)
    assert ready["state"] == "ready", ready
    assert published(settings_, upload_id)

    delete(server, token, upload_id)
    wait_until(lambda: not published(settings_, upload_id), what="the outputs to go")
    assert get_status(server.url, API_KEY, upload_id)["state"] == "terminated"
    assert httpx.get(server.url + ready["outputs"]["hls"]).status_code == 404
    wait_until(lambda: "upload.terminated" in event_types(receiver, upload_id))
