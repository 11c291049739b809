"""Two nodes, no shared disk: two servers and two workers, each with its own
UPLOAD_DATA_DIR, sharing only B2 (the simulator, served over HTTP), one Redis
and one PostgreSQL. An upload is created through one server and resumed
through the other, processed by whichever worker takes it, its status the same
from both servers, and a Redis FLUSHALL in the middle loses nothing.

The same suite runs on one node with the file state: both servers and workers
then share one UPLOAD_DATA_DIR, as a single machine does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from b2_helpers import make_fake_b2
from b2_http_helpers import account_keys, served_b2
from conftest import API_KEY, settings_env
from live_helpers import downloaded_sha256, uploader_client, wait_until, with_port
from media_helpers import make_video
from node_helpers import Node, b2_env, running_nodes
from postgres_helpers import create_database, drop_database

from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.one_path]
BACKEND = {"Authorization": f"Bearer {API_KEY}"}
CHUNK = 8 * 1024


@pytest.fixture
def state_url() -> Iterator[str]:
    """A database of this test's own, migrated with the real command."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def migrate(settings: Settings, url: str) -> None:
    env = settings_env(settings) | {"STATE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "upload_service.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def status_body(node: Node, upload_id: str) -> bytes:
    r = httpx.get(f"{node.url}/v1/uploads/{upload_id}", headers=BACKEND)
    assert r.status_code == 200, (node.name, r.status_code, r.text)
    return r.content


def same_from_both(nodes: list[Node], upload_id: str) -> dict[str, object]:
    """The status as both servers give it: byte for byte the same body. While a
    worker writes, one read can fall between two writes: read again then."""
    bodies: list[bytes] = []

    def agree() -> bool:
        bodies[:] = [status_body(node, upload_id) for node in nodes]
        return bodies[0] == bodies[1]

    wait_until(agree, "both servers give the same status", timeout=10)
    return dict(httpx.Response(200, content=bodies[0]).json())


def listed(node: Node, owner: str) -> list[dict[str, object]]:
    r = httpx.get(f"{node.url}/v1/uploads", params={"owner": owner}, headers=BACKEND)
    assert r.status_code == 200, r.text
    return list(r.json()["uploads"])


@pytest.mark.parametrize("layout", ["two-nodes-postgres", "one-node-files"])
def test_upload_moves_between_nodes_and_survives_flushall(
    layout: str,
    settings: Settings,
    redis_client: redis.Redis,
    make_token: object,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    fake = make_fake_b2()
    with served_b2(fake) as realm:
        env = b2_env(realm, *account_keys(fake), fake.bucket.name)
        if layout == "two-nodes-postgres":
            url = request.getfixturevalue("state_url")
            migrate(settings, url)
            nodes = [
                Node(
                    name,
                    settings.with_changes(data_dir=tmp_path / name / "data", state_url=url),
                    env,
                )
                for name in ("a", "b")
            ]
        else:
            shared = settings.with_changes(data_dir=tmp_path / "node" / "data")
            nodes = [Node(name, shared, env) for name in ("a", "b")]
        with running_nodes(nodes):
            run_the_journey(nodes, redis_client, make_token, tmp_path, layout)


def run_the_journey(
    nodes: list[Node], redis_client: redis.Redis, make_token: object, tmp_path: Path, layout: str
) -> None:
    a, b = nodes
    token = make_token("teacher-7")  # type: ignore[operator]
    clip = make_video(tmp_path / "lecture.mp4", seconds=2, size="320x180")
    size = clip.stat().st_size
    assert size > 4 * CHUNK

    # Created through A, the first part sent there.
    first = uploader_client(a.server, token).uploader(  # type: ignore[arg-type]
        str(clip), chunk_size=CHUNK, metadata={"filename": "lecture.mp4", "filetype": "video/mp4"}
    )
    first.upload(stop_at=2 * CHUNK + 100)
    upload_id = first.url.rsplit("/", 1)[-1]
    assert same_from_both(nodes, upload_id)["state"] == "uploading"
    # The offset reaches the status an UPLOAD_PROGRESS_INTERVAL after the last chunk.
    wait_until(
        lambda: same_from_both(nodes, upload_id)["offset"] == first.offset,
        "the paused upload's offset in its status",
    )

    # Redis loses everything in the middle of the upload: nothing of the state goes.
    redis_client.flushall()
    status = same_from_both(nodes, upload_id)
    assert (status["state"], status["offset"], status["owner"]) == (
        "uploading",
        first.offset,
        "teacher-7",
    )
    assert [u["id"] for u in listed(b, "teacher-7")] == [upload_id]

    # Resumed through B (tuspy asks B where it stands), to the end.
    second = uploader_client(b.server, token).uploader(  # type: ignore[arg-type]
        str(clip), url=with_port(first.url, b.server), chunk_size=CHUNK
    )
    assert second.offset == first.offset
    second.upload()
    assert second.offset == size

    # Processed by whichever worker took the job; the same status from both servers.
    def ready() -> bool:
        return same_from_both(nodes, upload_id)["state"] in ("ready", "failed")

    wait_until(ready, "the upload is processed", timeout=180)
    status = same_from_both(nodes, upload_id)
    assert status_body(a, upload_id) == status_body(b, upload_id)  # settled: no more writes
    assert status["state"] == "ready", status
    outputs = status["outputs"]
    assert isinstance(outputs, dict) and str(outputs["hls"]).startswith(
        f"https://cdn.example.com/media/{upload_id}/"
    )

    # FLUSHALL again: the finished status still comes back, the same on both.
    redis_client.flushall()
    assert same_from_both(nodes, upload_id) == status
    assert [u["state"] for u in listed(a, "teacher-7")] == ["ready"]
    # The bytes are in B2, not on either node: both servers hand out the original.
    assert downloaded_sha256(a.server, upload_id) == downloaded_sha256(b.server, upload_id)  # type: ignore[arg-type]
    if layout == "two-nodes-postgres":
        for node in nodes:
            assert not (node.settings.data_dir / "status").exists()
            assert not (node.settings.data_dir / "uploads").exists()
