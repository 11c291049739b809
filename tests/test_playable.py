"""Time to playable, end to end: a real server, real workers, Redis and ffmpeg.

playable (the smallest rung alone in the master) comes before ready (every rung),
each announced once by webhook; the status carries one percent and an ETA; the
storyboard's cues point into its sprite; and a worker SIGKILLed in the middle
of the ladder is followed by one that goes on from the rung it was making.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from media_helpers import make_video
from pipeline_helpers import (
    FAST_REQUEUE,
    WorkerProcess,
    get_status,
    ladder_under_way,
    pipeline_settings,
    upload_file,
)
from webhook_helpers import Receiver, wait_until

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVENTS = ["upload.created", "upload.completed", "media.playable", "media.ready"]
XYWH = re.compile(r"^(?P<uri>[^#]+)#xywh=(\d+),(\d+),(\d+),(\d+)$")


@pytest.fixture
def playable_settings(tmp_path: Path, redis_server: RedisServer, receiver: Receiver) -> Settings:
    return pipeline_settings(tmp_path / "data", redis_server.url, db=9, receiver=receiver)


@pytest.fixture
def server(playable_settings: Settings) -> Iterator[LiveServer]:
    # One server process: uvicorn's supervisor gives a child 5 s to answer its
    # health check, which a busy machine may not manage; one process has none.
    live = LiveServer(playable_settings, extra_env={"UPLOAD_SERVER_WORKERS": "1"}).start()
    yield live
    live.stop()


def follow(server: LiveServer, upload_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Every distinct record the status API showed, until ready or failed."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = get_status(server.url, API_KEY, upload_id)
        if not seen or record != seen[-1]:
            seen.append(record)
        if record["state"] in ("ready", "failed"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"still {seen[-1]['state']} after {timeout} s")


def event_types(receiver: Receiver, upload_id: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for request in list(receiver.requests):
        event = json.loads(request.body)
        if event["data"]["id"] == upload_id:
            found.append((event["type"], event["data"]))
    return found


def variants(master: str) -> list[str]:
    return [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF")]


def test_playable_before_ready_with_eta_storyboard_and_one_event_each(
    tmp_path: Path,
    playable_settings: Settings,
    server: LiveServer,
    receiver: Receiver,
    workers: list[WorkerProcess],
) -> None:
    clip = make_video(tmp_path / "lesson.mp4", seconds=12, size="1280x720")
    workers.append(WorkerProcess(playable_settings).start())
    upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)

    # The master as a player finds it the moment the upload is playable.
    record = wait_until(
        lambda: (
            (r := get_status(server.url, API_KEY, upload_id))["state"] != "processing"
            and r["state"] != "uploaded"
            and r
        ),
        timeout=120,
        what="playable",
    )
    assert record["state"] in ("playable", "ready")
    master_at_playable = httpx.get(server.url + record["outputs"]["hls"]).text
    after = get_status(server.url, API_KEY, upload_id)
    listed = len(variants(master_at_playable))
    assert 1 <= len(record["outputs"]["renditions"]) <= listed
    assert listed <= len(after["outputs"]["renditions"])
    seen = [record, *follow(server, upload_id)]
    ready = seen[-1]
    assert ready["state"] == "ready", ready

    # playable, then ready: one webhook each (deliveries may cross: their records say
    # in which order things happened).
    wait_until(lambda: len(event_types(receiver, upload_id)) >= 4, what="four webhooks")
    events = dict(event_types(receiver, upload_id))
    assert sorted(t for t, _ in event_types(receiver, upload_id)) == sorted(EVENTS)
    updated = [events[t]["updated_at"] for t in EVENTS]
    assert updated == sorted(updated)
    playable = events["media.playable"]
    assert playable["state"] == "playable"
    assert [r["height"] for r in playable["outputs"]["renditions"]] == [360]
    assert [r["height"] for r in ready["outputs"]["renditions"]] == [720, 480, 360]
    states = [r["state"] for r in seen]
    assert states.index("ready") > max(i for i, s in enumerate(states) if s == "playable")

    # The master at ready: every rung, each one playable, segments of the same length.
    signed = "?" + urlsplit(ready["outputs"]["hls"]).query
    master = httpx.get(server.url + ready["outputs"]["hls"]).text
    assert len(variants(master)) == 3 and master.startswith("#EXTM3U")
    durations = set()
    for line in master.splitlines():
        if line and not line.startswith("#"):
            assert line.endswith(signed.lstrip("?")), line
            playlist = httpx.get(urljoin(server.url + ready["outputs"]["hls"], line)).text
            durations.add(tuple(re.findall(r"#EXTINF:([\d.]+)", playlist)))
    assert len(durations) == 1, durations  # aligned: the same segments in every rung

    # One progress figure with an ETA while processing, 100 % and 0 s at the end.
    working = [r["progress"] for r in seen if r["state"] in ("processing", "playable")]
    etas = [p["eta_s"] for p in working if p and p.get("eta_s") is not None]
    assert etas and all(isinstance(e, int) and e >= 0 for e in etas)
    # It comes down as the work gets done; seen from `playable` on, what is left may
    # already round to 0 s in every sample on a quick machine.
    assert max(etas) > etas[-1] or set(etas) == {0}, etas
    percents = [p["percent"] for p in working if p]
    assert percents == sorted(percents)
    assert ready["progress"] == {"stage": "publish", "percent": 100.0, "eta_s": 0}

    # The storyboard: cues over the whole clip, each a tile inside the signed sprite.
    vtt_url = server.url + ready["outputs"]["storyboard"]
    response = httpx.get(vtt_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/vtt")
    lines = response.text.splitlines()
    assert lines[0] == "WEBVTT"
    cues = [(lines[i - 1], line) for i, line in enumerate(lines) if XYWH.match(line)]
    assert len(cues) == 3  # a tile every 4 s of 12 s
    assert cues[0][0].startswith("00:00:00.000 -->") and cues[-1][0].endswith("00:00:12.000")
    sprite_uri = XYWH.match(cues[0][1])["uri"]  # type: ignore[index]
    assert sprite_uri.startswith("storyboard.jpg?exp=")
    sprite = httpx.get(urljoin(vtt_url, sprite_uri))
    assert sprite.status_code == 200 and sprite.headers["content-type"] == "image/jpeg"
    (tmp_path / "sprite.jpg").write_bytes(sprite.content)
    size = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
         str(tmp_path / "sprite.jpg")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    width, height = (int(v) for v in size.split(","))
    for _, payload in cues:
        x, y, w, h = (int(v) for v in XYWH.match(payload).groups()[1:])  # type: ignore[union-attr]
        assert (w, h) == (160, 90) and x + w <= width and y + h <= height
    # Without the signature the sprite is refused like any other media.
    assert httpx.get(urljoin(vtt_url, "storyboard.jpg")).status_code == 403


def test_worker_killed_mid_ladder_resumes_from_the_finished_rungs(
    tmp_path: Path,
    playable_settings: Settings,
    server: LiveServer,
    receiver: Receiver,
    workers: list[WorkerProcess],
) -> None:
    clip = make_video(tmp_path / "lesson.mp4", seconds=20, size="1280x720")
    first = WorkerProcess(playable_settings, FAST_REQUEUE, name="worker-a").start()
    workers.append(first)
    upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)
    media = playable_settings.media_dir / upload_id
    manifest = playable_settings.work_dir / upload_id / "manifest.json"

    wait_until(
        lambda: ladder_under_way(playable_settings, upload_id),
        timeout=120,
        what="a higher rung under way",
    )
    first.kill()
    assert get_status(server.url, API_KEY, upload_id)["state"] == "playable"
    smallest = media / "hls/v2/seg_00000.ts"
    before = smallest.stat()
    checkpoint = json.loads(manifest.read_text())
    assert checkpoint["runs"]["rung2"] == 1 and "rung2" in checkpoint["pieces"]

    second = WorkerProcess(playable_settings, FAST_REQUEUE, name="worker-b").start()
    workers.append(second)
    ready = follow(server, upload_id, timeout=150)[-1]
    assert ready["state"] == "ready", ready
    assert [r["height"] for r in ready["outputs"]["renditions"]] == [720, 480, 360]

    # The smallest rung was not made again: the same file, and one run of it in all.
    after = smallest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # (The log line may follow the status write by a moment.)
    ready_line = wait_until(
        lambda: re.search(r"pipeline\.ready .*runs=(\{[^}]*\})", second.log()), what="the log"
    )
    runs = ready_line.group(1)
    assert "'rung2': 1," in runs and "'poster': 1," in runs, runs
    marker = f"pipeline.ready upload_id={upload_id}"
    assert first.log().count(marker) == 0 and second.log().count(marker) == 1

    # One playable and one ready in all, though the job ran twice.
    wait_until(lambda: len(event_types(receiver, upload_id)) >= 4, what="webhooks")
    time.sleep(1)  # nothing more comes
    assert sorted(t for t, _ in event_types(receiver, upload_id)) == sorted(EVENTS)
    master = (media / "hls/master.m3u8").read_text()
    assert len(variants(master)) == 3
    assert not (playable_settings.work_dir / upload_id).exists()
