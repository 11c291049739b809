"""The pipeline end to end: a real server, a real `upload-service worker`, real Redis and ffmpeg.

One server and one worker serve the whole module (starting them is most of
the cost); they use their own Redis database so that no other test's messages
reach this worker.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from media_helpers import make_audio, make_text_file, make_truncated_mp4, make_video
from pipeline_helpers import (
    WorkerProcess,
    create_upload,
    ffprobe_json,
    get_status,
    pipeline_settings,
    send_bytes,
    upload_file,
    wait_for_state,
)
from webhook_helpers import Receiver, wait_until

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.one_path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The backend's webhook endpoint: every event the server and worker send."""
    with Receiver() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def e2e_settings(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, receiver: Receiver
) -> Settings:
    data_dir = tmp_path_factory.mktemp("pipeline-e2e") / "data"
    return pipeline_settings(
        data_dir, redis_server.url, db=7, receiver=receiver, max_size=200 * 1024 * 1024
    )


@pytest.fixture(scope="module")
def server(e2e_settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(e2e_settings).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def worker(e2e_settings: Settings, server: LiveServer) -> Iterator[WorkerProcess]:
    process = WorkerProcess(
        e2e_settings,
        {"PROCESS_MIN_BACKOFF": "0.3", "PROCESS_MAX_RETRIES": "2"},
    ).start()
    yield process
    process.stop()


@pytest.fixture
def token() -> Callable[..., str]:
    def make(sub: str = "user-1", **claims: Any) -> str:
        return mint_token(TOKEN_SECRET, sub, **claims)

    return make


def events_of(receiver: Receiver, upload_id: str) -> dict[str, list[dict[str, Any]]]:
    """Delivered events of one upload by type (delivery order across types may vary)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for request in list(receiver.requests):
        event = json.loads(request.body)
        if event["data"]["id"] == upload_id:
            found.setdefault(event["type"], []).append(event)
    return found


def media_files(settings: Settings, upload_id: str) -> list[str]:
    root = settings.media_dir / upload_id
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_video_goes_from_uploading_to_ready_with_hls(
    tmp_path: Path,
    receiver: Receiver,
    server: LiveServer,
    worker: WorkerProcess,
    e2e_settings: Settings,
    token: Callable[..., str],
) -> None:
    clip = make_video(tmp_path / "lecture.mp4", seconds=10, size="640x360")
    data = clip.read_bytes()
    tok = token()
    upload_id = create_upload(server.url, tok, len(data), "lecture.mp4")
    assert get_status(server.url, API_KEY, upload_id)["state"] == "uploading"
    half = len(data) // 2
    send_bytes(server.url, tok, upload_id, data[:half])
    seen = ["uploading"]
    halfway = get_status(server.url, API_KEY, upload_id)
    assert halfway["state"] == "uploading"
    assert halfway["progress"]["stage"] == "upload"
    assert halfway["progress"]["percent"] == round(100 * half / len(data), 1)
    send_bytes(server.url, tok, upload_id, data[half:], offset=half)
    record = wait_for_state(server.url, API_KEY, upload_id, seen=seen, timeout=90)
    assert record["state"] == "ready", record
    # "uploaded" may be overtaken by the worker before a poll sees it; the rest may not.
    # So may "playable", for a clip this short; the order never changes.
    order = ["uploading", "uploaded", "processing", "playable", "ready"]
    assert seen[0] == "uploading" and seen[-1] == "ready", seen
    assert [order.index(state) for state in seen] == sorted(order.index(s) for s in seen)

    assert record["media"] == {"kind": "video", "duration": 10.0, "width": 640, "height": 360}
    assert record["error"] is None
    outputs = record["outputs"]
    assert outputs["renditions"], outputs
    assert all(r["height"] <= 360 for r in outputs["renditions"])
    assert [r["height"] for r in outputs["renditions"]] == [360]

    master = ffprobe_json(server.url + outputs["hls"])
    heights = {s["height"] for s in master["streams"] if s["codec_type"] == "video"}
    assert heights == {360}
    assert {s["codec_name"] for s in master["streams"]} == {"h264", "aac"}

    playlist = httpx.get(server.url + outputs["renditions"][0]["url"]).text
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", playlist)]
    assert sum(durations) == pytest.approx(10.0, abs=0.2)
    assert all(4.0 <= d <= 6.0 for d in durations[:-1]), durations

    mp4 = ffprobe_json(server.url + outputs["mp4"])
    assert float(mp4["format"]["duration"]) == pytest.approx(10.0, abs=0.2)
    poster = httpx.get(server.url + outputs["poster"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"  # JPEG
    # The original: its owner's download, never a public file.
    assert outputs["original"] == f"/files/{upload_id}"
    assert httpx.get(server.url + outputs["original"]).status_code == 401
    original = httpx.get(
        server.url + outputs["original"], headers={"Authorization": f"Bearer {tok}"}
    )
    assert original.content == data
    assert original.headers["content-disposition"].startswith("attachment;")
    assert not [name for name in media_files(e2e_settings, upload_id) if "original" in name]
    # The job's scratch space is gone.
    assert not (e2e_settings.work_dir / upload_id).exists()

    # The webhooks tell the same story, "uploaded" included, each event once.
    # Each event is a delivery of its own: media.playable may land after media.ready.
    expected = {
        "upload.created": ["uploading"],
        "upload.completed": ["uploaded"],
        "media.playable": ["playable"],
        "media.ready": ["ready"],
    }
    wait_until(lambda: set(events_of(receiver, upload_id)) >= set(expected), what="every event")
    time.sleep(0.5)  # nothing more comes
    events = events_of(receiver, upload_id)
    states = {kind: [e["data"]["state"] for e in sent] for kind, sent in events.items()}
    assert states == expected
    # Signed as each was handed out: the same URLs, and each carries a signature.
    delivered = events["media.ready"][0]["data"]["outputs"]
    assert unsigned(delivered) == unsigned(outputs)
    assert "?exp=" in delivered["hls"] and "&sig=" in delivered["hls"]


def unsigned(value: Any) -> Any:
    """Media URLs without their signed query (two readers may fall in two expiry windows)."""
    if isinstance(value, str):
        return value.split("?exp=", 1)[0]
    if isinstance(value, dict):
        return {k: unsigned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unsigned(v) for v in value]
    return value


def test_audio_only_file_gets_aac_and_audio_hls(
    tmp_path: Path, server: LiveServer, worker: WorkerProcess, token: Callable[..., str]
) -> None:
    audio = make_audio(tmp_path / "talk.mp3", seconds=6)
    upload_id = upload_file(server.url, token(), audio)
    record = wait_for_state(server.url, API_KEY, upload_id)
    assert record["state"] == "ready", record
    assert record["media"]["kind"] == "audio"
    assert record["media"]["width"] is None and record["media"]["height"] is None
    assert record["media"]["duration"] == pytest.approx(6.0, abs=0.1)
    outputs = record["outputs"]
    assert "poster" not in outputs and "mp4" not in outputs
    streams = ffprobe_json(server.url + outputs["hls"])["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"]
    m4a = ffprobe_json(server.url + outputs["audio"])
    assert [s["codec_name"] for s in m4a["streams"]] == ["aac"]


def test_text_file_named_mp4_is_unsupported_and_never_published(
    tmp_path: Path,
    receiver: Receiver,
    server: LiveServer,
    worker: WorkerProcess,
    e2e_settings: Settings,
    token: Callable[..., str],
) -> None:
    upload_id = upload_file(server.url, token(), make_text_file(tmp_path / "movie.mp4"))
    record = wait_for_state(server.url, API_KEY, upload_id)
    assert record["state"] == "failed"
    assert record["error"]["code"] == "unsupported_media"
    assert "not audio or video" in record["error"]["message"]
    assert record["outputs"] == {}
    assert media_files(e2e_settings, upload_id) == []
    wait_until(lambda: "media.failed" in events_of(receiver, upload_id), what="media.failed")
    failed = events_of(receiver, upload_id)["media.failed"]
    assert [e["data"]["error"]["code"] for e in failed] == ["unsupported_media"]


def test_truncated_mp4_is_corrupt_media(
    tmp_path: Path,
    server: LiveServer,
    worker: WorkerProcess,
    e2e_settings: Settings,
    token: Callable[..., str],
) -> None:
    upload_id = upload_file(server.url, token(), make_truncated_mp4(tmp_path / "cut.mp4"))
    record = wait_for_state(server.url, API_KEY, upload_id)
    assert record["state"] == "failed"
    assert record["error"]["code"] == "corrupt_media"
    assert "cannot be decoded" in record["error"]["message"]
    assert media_files(e2e_settings, upload_id) == []


def test_token_for_audio_only_rejects_a_video(
    tmp_path: Path, server: LiveServer, worker: WorkerProcess, token: Callable[..., str]
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=2, size="320x180")
    upload_id = upload_file(server.url, token(kinds=["audio"]), clip)
    record = wait_for_state(server.url, API_KEY, upload_id)
    assert record["state"] == "failed"
    assert record["error"] == {
        "code": "unsupported_media",
        "message": "this upload accepts audio only, and the file is video",
    }


def test_transient_failure_is_retried_then_recorded_as_processing_failed(
    tmp_path: Path,
    server: LiveServer,
    worker: WorkerProcess,
    e2e_settings: Settings,
    token: Callable[..., str],
) -> None:
    # A file where the job's work dir should be: every attempt fails to create it.
    clip = make_video(tmp_path / "clip.mp4", seconds=2, size="320x180")
    data = clip.read_bytes()
    tok = token()
    upload_id = create_upload(server.url, tok, len(data), "clip.mp4")
    e2e_settings.work_dir.mkdir(parents=True, exist_ok=True)
    blocker = e2e_settings.work_dir / upload_id
    blocker.write_text("in the way")
    send_bytes(server.url, tok, upload_id, data)
    record = wait_for_state(server.url, API_KEY, upload_id, timeout=60)
    assert record["state"] == "failed"
    assert record["error"]["code"] == "processing_failed"
    assert "FileExistsError" in record["error"]["message"]
    # First attempt plus PROCESS_MAX_RETRIES=2 retries, each logged by Dramatiq.
    assert len(re.findall(r"Retrying message", worker.log())) >= 2
    blocker.unlink()
