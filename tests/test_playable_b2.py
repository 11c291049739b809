"""A job that publishes to B2 resumes after a SIGKILL without uploading twice.

Like the local kill test of test_playable.py, with the rungs published to B2 (b2sdk's
simulator, served over HTTP to the real server and workers): what the first worker
published before it died stays as it is in the bucket, the second worker publishes
the rest from its checkpoint, and every published name ends with one version.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from b2_helpers import FakeB2, make_fake_b2
from b2_http_helpers import account_keys, served_b2
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from media_helpers import make_video
from node_helpers import b2_env
from pipeline_helpers import (
    FAST_REQUEUE,
    WorkerProcess,
    get_status,
    ladder_under_way,
    pipeline_settings,
    upload_file,
    wait_for_state,
)
from webhook_helpers import wait_until

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def fake_b2() -> FakeB2:
    return make_fake_b2()


@pytest.fixture
def b2_vars(fake_b2: FakeB2) -> Iterator[dict[str, str]]:
    with served_b2(fake_b2) as realm:
        yield b2_env(realm, *account_keys(fake_b2), fake_b2.bucket.name)


@pytest.fixture
def job(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return pipeline_settings(tmp_path / "data", redis_server.url, db=10)


@pytest.fixture
def server(job: Settings, b2_vars: dict[str, str]) -> Iterator[LiveServer]:
    live = LiveServer(job, extra_env=b2_vars).start()
    yield live
    live.stop()


def published(fake: FakeB2, upload_id: str) -> dict[str, list[str]]:
    """Each published name under the upload's folder, with its versions' file ids."""
    folder = f"media/{upload_id}/"
    return {
        name[len(folder) :]: [v.id_ for v in versions]  # type: ignore[attr-defined]
        for name, versions in fake.versions(folder).items()
    }


def test_a_worker_killed_mid_ladder_leaves_b2_as_it_was_and_the_next_one_finishes(
    tmp_path: Path,
    job: Settings,
    server: LiveServer,
    b2_vars: dict[str, str],
    fake_b2: FakeB2,
    workers: list[WorkerProcess],
) -> None:
    clip = make_video(tmp_path / "lesson.mp4", seconds=20, size="1280x720")
    first = WorkerProcess(job, {**b2_vars, **FAST_REQUEUE}, name="worker-a").start()
    workers.append(first)
    upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)

    wait_until(
        lambda: ladder_under_way(job, upload_id), timeout=120, what="a higher rung under way"
    )
    first.kill()
    assert get_status(server.url, API_KEY, upload_id)["state"] == "playable"
    before = published(fake_b2, upload_id)
    assert "hls/master.m3u8" in before and "hls/v2/seg_00000.ts" in before, sorted(before)

    second = WorkerProcess(job, {**b2_vars, **FAST_REQUEUE}, name="worker-b").start()
    workers.append(second)
    ready = wait_for_state(server.url, API_KEY, upload_id, timeout=150)
    assert ready["state"] == "ready", ready
    assert [r["height"] for r in ready["outputs"]["renditions"]] == [720, 480, 360]

    # The second worker went on from the checkpoint: the smallest rung ran once in all.
    ready_line = wait_until(
        lambda: re.search(r"pipeline\.ready .*runs=(\{[^}]*\})", second.log()), what="the log"
    )
    assert "'rung2': 1," in ready_line.group(1), ready_line.group(1)

    after = published(fake_b2, upload_id)
    # One version of every name: nothing published twice, nothing left half-done.
    assert {name: len(ids) for name, ids in after.items() if len(ids) != 1} == {}
    # The smallest rung went up once, before the kill: the very same B2 files.
    smallest = {name: ids for name, ids in before.items() if name.startswith("hls/v2/")}
    assert smallest and all(after[name] == ids for name, ids in smallest.items())
    # The higher rungs and the download came from the second worker.
    assert {"hls/v0/index.m3u8", "hls/v1/index.m3u8", "video.mp4"} <= set(after) - set(before)
    master = io.BytesIO()
    fake_b2.bucket.download_file_by_name(f"media/{upload_id}/hls/master.m3u8").save(master)
    assert master.getvalue().decode().count("#EXT-X-STREAM-INF") == 3
