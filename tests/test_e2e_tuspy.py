"""End to end: `upload-service serve` on real uvicorn, real Redis, tuspy as the client.

Servers are killed for real (SIGKILL, SIGTERM) in the middle of a PATCH; a
slow client is an httpx request whose body generator waits on an Event, so a
test knows exactly how far the client got.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from conftest import LiveServer, RedisServer
from live_helpers import (
    MIB,
    OCTETS,
    LiveServerArgs,
    SlowPatch,
    create,
    downloaded_sha256,
    head_offset,
    random_file,
    status_of,
    tus,
    uploader_client,
    wait_until,
    with_port,
)

from upload_service.core.settings import Settings

Token = Callable[..., str]


@pytest.fixture
def settings(settings: Settings, redis_server: RedisServer) -> Settings:
    # A Redis database of our own: the pipeline messages these servers enqueue
    # must not reach a worker that another test starts on the shared Redis.
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return settings.with_changes(redis_url=url)


# -- tests -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_50_mb_upload_arrives_byte_identical(
    live_server: LiveServer, make_token: Token, tmp_path: Path
) -> None:
    path, sha = random_file(tmp_path / "lecture.bin", 50 * MIB)
    token = make_token(sub="user-50")
    uploader = uploader_client(live_server, token).uploader(
        str(path), chunk_size=16 * MIB, metadata={"filename": "lecture.bin"}
    )
    uploader.upload()
    assert uploader.url is not None
    upload_id = uploader.url.rsplit("/", 1)[-1]
    assert head_offset(live_server, token, upload_id) == 50 * MIB
    assert downloaded_sha256(live_server, upload_id) == sha
    status = status_of(live_server, upload_id)
    assert (status["state"], status["offset"], status["length"]) == ("uploaded", 50 * MIB, 50 * MIB)
    assert status["metadata"] == {"filename": "lecture.bin"}


@pytest.mark.e2e
@pytest.mark.slow
def test_sigkill_at_40_percent_then_resume(
    settings: Settings, make_token: Token, tmp_path: Path
) -> None:
    size = 24 * MIB
    path, sha = random_file(tmp_path / "talk.bin", size)
    data = path.read_bytes()
    token = make_token()
    # A short lock TTL: the killed server cannot release its lock, so it must expire.
    env = {"UPLOAD_LOCK_TTL": "2"}
    first = LiveServer(settings, extra_env=env).start()
    second: LiveServer | None = None
    try:
        upload_id = create(first, token, size)
        url = f"{first.url}/files/{upload_id}"
        slow = SlowPatch(url, token, 0, data, pause_at=int(size * 0.4)).start()
        wait_until(lambda: head_offset(first, token, upload_id) > 0, "bytes reach the disk")
        first.kill()
        slow.finish()
        assert slow.response is None and slow.error is not None

        # Same data dir, same port (so the client's URL still works), new process.
        second = LiveServer(settings, port=first.port, extra_env=env).start()
        stored = (settings.uploads_dir / upload_id).read_bytes()
        assert 0 < len(stored) <= slow.sent
        assert stored == data[: len(stored)]
        assert head_offset(second, token, upload_id) == len(stored)

        uploader = uploader_client(second, token).uploader(
            str(path),
            url=url,
            chunk_size=4 * MIB,
            retries=40,
            retry_delay=0.25,
        )
        assert uploader.offset == len(stored)
        uploader.upload()
        assert downloaded_sha256(second, upload_id) == sha
        assert status_of(second, upload_id)["state"] == "uploaded"
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.e2e
@pytest.mark.slow
def test_two_servers_alternating_patches(
    server_factory: Callable[..., LiveServer], make_token: Token, tmp_path: Path
) -> None:
    size = 12 * MIB + 12345
    path, sha = random_file(tmp_path / "course.bin", size)
    token = make_token()
    servers = [server_factory(), server_factory()]
    clients = [uploader_client(s, token) for s in servers]
    uploader = clients[0].uploader(str(path), chunk_size=MIB)
    url = uploader.create_url()
    turn = 0
    offset = 0
    while offset < size:
        server = servers[turn % 2]
        # A fresh uploader asks this server (HEAD) where the upload stands.
        step = clients[turn % 2].uploader(str(path), url=with_port(url, server), chunk_size=MIB)
        assert step.offset == offset
        step.upload(stop_at=min(size, offset + MIB + 7))
        offset = step.offset
        assert head_offset(servers[(turn + 1) % 2], token, url.rsplit("/", 1)[-1]) == offset
        turn += 1
    assert turn >= 12
    upload_id = url.rsplit("/", 1)[-1]
    assert downloaded_sha256(servers[0], upload_id) == sha
    assert downloaded_sha256(servers[1], upload_id) == sha


@pytest.mark.e2e
@pytest.mark.slow
def test_concurrent_patches_across_two_servers_never_interleave(
    server_factory: Callable[..., LiveServer], make_token: Token, tmp_path: Path
) -> None:
    size = 6 * MIB
    path, sha = random_file(tmp_path / "a.bin", size)
    data = path.read_bytes()
    token = make_token()
    first, second = server_factory(), server_factory()
    upload_id = create(first, token, size)
    slow = SlowPatch(f"{first.url}/files/{upload_id}", token, 0, data, pause_at=3 * MIB).start()
    try:
        # While the slow PATCH holds the upload on one server, the other refuses.
        for offset in (0, head_offset(second, token, upload_id)):
            racer = httpx.patch(
                f"{second.url}/files/{upload_id}",
                content=b"X" * 4096,
                headers=tus(token, **{"Upload-Offset": str(offset), "Content-Type": OCTETS}),
            )
            assert racer.status_code in (409, 423), racer.text
            assert racer.json()["error"]["code"] in ("locked", "mismatched_offset")
    finally:
        slow.finish()
    assert slow.response is not None and slow.response.status_code == 204
    assert slow.response.headers["upload-offset"] == str(size)
    assert downloaded_sha256(second, upload_id) == sha


@pytest.mark.e2e
def test_concurrent_patches_one_gets_423_and_bytes_never_interleave(
    live_server: LiveServer, settings: Settings, make_token: Token, tmp_path: Path
) -> None:
    size = 4 * MIB
    path, sha = random_file(tmp_path / "b.bin", size)
    data = path.read_bytes()
    token = make_token()
    upload_id = create(live_server, token, size)
    url = f"{live_server.url}/files/{upload_id}"
    lock_key = f"upload-lock:{upload_id}"
    locks = redis.Redis.from_url(settings.redis_url)
    slow = SlowPatch(url, token, 0, data, pause_at=MIB).start()
    try:
        wait_until(lambda: bool(locks.exists(lock_key)), "the slow PATCH holds the lock")
        statuses = set()
        for offset in (0, head_offset(live_server, token, upload_id), size // 2):
            racer = httpx.patch(
                url,
                content=b"X" * 1000,
                headers=tus(token, **{"Upload-Offset": str(offset), "Content-Type": OCTETS}),
            )
            statuses.add(racer.status_code)
        assert statuses == {423}
        # DELETE must wait its turn too, rather than pull the file from under the writer.
        assert httpx.delete(url, headers=tus(token)).status_code == 423
    finally:
        slow.finish()
    assert slow.response is not None and slow.response.status_code == 204
    assert not locks.exists(lock_key)
    locks.close()
    assert downloaded_sha256(live_server, upload_id) == sha


@pytest.mark.e2e
def test_sigterm_lets_a_slow_patch_finish(
    live_server: LiveServer, make_token: Token, tmp_path: Path
) -> None:
    size = 3 * MIB
    path, sha = random_file(tmp_path / "c.bin", size)
    token = make_token()
    upload_id = create(live_server, token, size)
    slow = SlowPatch(
        f"{live_server.url}/files/{upload_id}", token, 0, path.read_bytes(), pause_at=MIB
    ).start()
    assert live_server.process is not None
    live_server.process.send_signal(signal.SIGTERM)
    slow.finish()  # the client goes on sending during the grace period
    assert slow.response is not None and slow.response.status_code == 204, slow.error
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert live_server.process.wait(15) in (0, -signal.SIGTERM)
    restarted = LiveServer(live_server.settings).start()
    try:
        assert head_offset(restarted, token, upload_id) == size
        assert downloaded_sha256(restarted, upload_id) == sha
    finally:
        restarted.stop()


@pytest.mark.e2e
def test_sigterm_during_a_stalled_patch_keeps_and_records_the_bytes(
    settings: Settings, make_token: Token, tmp_path: Path
) -> None:
    size = 8 * MIB
    path, sha = random_file(tmp_path / "d.bin", size)
    data = path.read_bytes()
    token = make_token()
    server = LiveServerArgs(settings, ["--graceful-timeout", "1"]).start()
    restarted: LiveServer | None = None
    try:
        upload_id = create(server, token, size)
        url = f"{server.url}/files/{upload_id}"
        slow = SlowPatch(url, token, 0, data, pause_at=3 * MIB).start()
        wait_until(lambda: head_offset(server, token, upload_id) > 0, "bytes reach the disk")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # The client stalls past the grace period: the server cancels the request.
        assert server.process.wait(30) in (0, -signal.SIGTERM)
        slow.finish()
        # uvicorn answers a cancelled request with 500 when it can, else drops it.
        assert slow.response is None or slow.response.status_code == 500

        restarted = LiveServer(settings, port=server.port).start()
        stored = (settings.uploads_dir / upload_id).read_bytes()
        assert 0 < len(stored) <= slow.sent
        assert stored == data[: len(stored)]
        assert head_offset(restarted, token, upload_id) == len(stored)
        # The status record says what the disk says.
        assert status_of(restarted, upload_id)["offset"] == len(stored)
        uploader = uploader_client(restarted, token).uploader(
            str(path),
            url=url,
            chunk_size=4 * MIB,
            retries=40,
            retry_delay=0.25,
        )
        uploader.upload()
        assert downloaded_sha256(restarted, upload_id) == sha
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
