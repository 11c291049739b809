"""The client SDK against a real server: progress, resumption across processes, errors,
tokens and the status client."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from client_helpers import download, random_file, server_offset, stored_urls, wait_for_offset
from conftest import API_KEY, TOKEN_SECRET, LiveServer, free_port

from client_sdk import (
    Gone,
    JSONURLStore,
    NetworkError,
    RetryPolicy,
    SampleFingerprint,
    StatusClient,
    TooLarge,
    Unauthorized,
    Uploader,
    UploadError,
    mint_upload_token,
)

pytestmark = pytest.mark.e2e
SECRET = "another-secret-0123456789abcdef0123456789"
FAST_RETRY = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05)


def token(sub: str = "user-1", **claims: Any) -> str:
    return mint_upload_token(TOKEN_SECRET, sub, ttl=600, **claims)


def test_import_needs_neither_service_nor_processors() -> None:
    # Poisoned entries make any import of these packages fail at once.
    code = textwrap.dedent(
        """
        import sys
        for name in ("upload_service", "processors", "starlette", "dramatiq", "redis",
                     "uvicorn", "b2sdk", "faster_whisper"):
            sys.modules[name] = None
        import client_sdk, client_sdk.cli
        for name in client_sdk.__all__:
            getattr(client_sdk, name)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_exception_hierarchy() -> None:
    for kind in (Unauthorized, TooLarge, Gone, NetworkError):
        assert issubclass(kind, UploadError)


def test_mint_upload_token_claims() -> None:
    raw = mint_upload_token(
        SECRET, "user-9", ttl=60, max_bytes=1000, kinds=["video"], meta={"course_id": 3}
    )
    claims = jwt.decode(raw, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "user-9"
    assert claims["max_bytes"] == 1000 and claims["kinds"] == ["video"]
    assert claims["meta"] == {"course_id": 3}
    assert 55 <= claims["exp"] - claims["iat"] <= 60
    with pytest.raises(ValueError):
        mint_upload_token(SECRET, "u", kinds=["pictures"])


def test_upload_progress_rises_to_file_size(live_server: LiveServer, tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 123
    path = random_file(tmp_path / "clip.bin", size)
    seen: list[tuple[int, int]] = []
    with Uploader(live_server.url, token(), chunk_size=1024 * 1024, store=tmp_path) as up:
        assert up.checksum_algorithm() == "sha256"  # advertised by OPTIONS
        result = up.upload(
            path, metadata={"filetype": "video/mp4"}, on_progress=lambda s, t: seen.append((s, t))
        )
    sent = [s for s, _ in seen]
    assert sent == sorted(set(sent)), "progress must rise strictly"
    assert sent[0] == 0 and sent[-1] == size
    assert {t for _, t in seen} == {size}
    assert len(sent) > 4  # reported inside chunks, not only per chunk
    assert result.started_at == 0 and not result.resumed
    assert download(live_server.url, result.id, token()) == path.read_bytes()
    assert stored_urls(tmp_path / "uploads.json") == []  # finished: forgotten
    status = httpx.get(
        f"{live_server.url}/v1/uploads/{result.id}", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    assert status["metadata"] == {"filename": "clip.bin", "filetype": "video/mp4"}


def test_upload_file_object_and_stop_at_resume(live_server: LiveServer, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", 700_000).read_bytes()
    with Uploader(live_server.url, token(), chunk_size=100_000, store=tmp_path) as up:
        first = up.upload(io.BytesIO(data), stop_at=300_000)
        assert server_offset(first.url, token()) == 300_000
        again = up.upload(io.BytesIO(data))  # same content -> same stored upload
    assert again.url == first.url and again.started_at == 300_000
    assert download(live_server.url, again.id, token()) == data


CHILD = """
import sys, time
from client_sdk import Uploader
server, tok, path, store = sys.argv[1:5]
def slow(sent, total):
    print(sent, flush=True)
    time.sleep(0.02)  # throttled: the parent kills us mid-way
Uploader(server, tok, chunk_size=256 * 1024, store=store).upload(path, on_progress=slow)
print("finished", flush=True)
"""


@pytest.mark.slow
def test_killed_upload_resumes_in_another_process(live_server: LiveServer, tmp_path: Path) -> None:
    size = 6 * 1024 * 1024
    path = random_file(tmp_path / "big.bin", size)
    store = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, live_server.url, token(), str(path), str(store)],
        stdout=subprocess.PIPE,
    )
    try:
        url = wait_for_offset(store / "uploads.json", token(), 512 * 1024, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    killed_at = server_offset(url, token())
    assert 0 < killed_at < size

    seen: list[int] = []
    with Uploader(live_server.url, token(), chunk_size=1024 * 1024, store=store) as up:
        result = up.upload(path, on_progress=lambda s, t: seen.append(s))
    assert result.url == url
    assert result.started_at >= killed_at > 0  # continued, did not start over
    assert seen[0] == result.started_at and seen[-1] == size
    assert download(live_server.url, result.id, token()) == path.read_bytes()


@pytest.mark.slow
def test_retries_ride_out_a_server_restart(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    # A short lock TTL: the killed server's lock on the upload must lapse (423 until then).
    server = server_factory(UPLOAD_LOCK_TTL="2")
    size = 3 * 1024 * 1024
    path = random_file(tmp_path / "talk.mp4", size)
    restarted: list[threading.Thread] = []

    def restart() -> None:
        time.sleep(0.5)
        server.start()

    def crash_once(sent: int, total: int) -> None:
        if sent >= 1024 * 1024 and not restarted:
            # SIGKILL the server mid-PATCH; bring it back on the same port a bit later.
            server.kill()
            restarted.append(threading.Thread(target=restart))
            restarted[0].start()

    retry = RetryPolicy(retries=12, backoff=0.1, max_backoff=1.0)
    with Uploader(server.url, token(), chunk_size=512 * 1024, store=tmp_path, retry=retry) as up:
        result = up.upload(path, on_progress=crash_once)
    restarted[0].join()
    assert download(server.url, result.id, token()) == path.read_bytes()
    status = httpx.get(
        f"{server.url}/v1/uploads/{result.id}", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    assert status["metadata"]["filetype"] == "video/mp4"  # guessed from the name


def test_bad_token_is_unauthorized(live_server: LiveServer, tmp_path: Path) -> None:
    path = random_file(tmp_path / "x.bin", 1000)
    forged = mint_upload_token("not-the-secret-0123456789abcdef0123456789", "user-1")
    up = Uploader(live_server.url, forged, store=tmp_path, retry=FAST_RETRY)
    with up, pytest.raises(Unauthorized) as info:
        up.upload(path)
    assert info.value.status == 401


def test_oversize_is_too_large(live_server: LiveServer, tmp_path: Path) -> None:
    path = random_file(tmp_path / "x.bin", 5000)
    up = Uploader(live_server.url, token(max_bytes=4096), store=tmp_path)
    with up, pytest.raises(TooLarge) as info:
        up.upload(path)
    assert info.value.status == 413


def test_terminated_upload_is_gone(live_server: LiveServer, tmp_path: Path) -> None:
    path = random_file(tmp_path / "x.bin", 200_000)
    with Uploader(live_server.url, token(), chunk_size=50_000, store=tmp_path) as up:
        partial = up.upload(path, stop_at=50_000)
        up.terminate(partial.url)
        with pytest.raises(Gone):
            up.upload(path, url=partial.url)  # an explicit URL that no longer exists
        with pytest.raises(Gone):
            up.terminate(partial.url)
        # Via the stored URL instead, a terminated upload is forgotten and started anew.
        fresh = up.upload(path)
    assert fresh.url != partial.url and fresh.started_at == 0


def test_server_down_is_network_error(tmp_path: Path) -> None:
    path = random_file(tmp_path / "x.bin", 1000)
    nobody = f"http://127.0.0.1:{free_port()}"
    up = Uploader(nobody, token(), store=tmp_path, retry=FAST_RETRY)
    with up, pytest.raises(NetworkError):
        up.upload(path)
    status = StatusClient(nobody, API_KEY, retry=FAST_RETRY)
    with status, pytest.raises(NetworkError):
        status.get("anything")


def test_status_client_get_many_and_etags(live_server: LiveServer, tmp_path: Path) -> None:
    ids = []
    with Uploader(live_server.url, token(), store=tmp_path) as up:
        for i in range(2):
            ids.append(up.upload(random_file(tmp_path / f"f{i}.bin", 1000 + i)).id)
    with StatusClient(live_server.url, API_KEY) as status:
        first = status.get(ids[0])
        assert first is not None and first["state"] in ("uploaded", "processing", "ready", "failed")
        assert first["length"] == 1000 and first["owner"] == "user-1"
        assert status.get("no-such-upload") is None
        many = status.get_many([*ids, "no-such-upload", ids[0]])
        assert set(many) == set(ids)
        # Unchanged records come back as 304 and the remembered body.
        before = status.not_modified
        again = status.get_many([*ids, "no-such-upload"])  # the same query again
        assert status.not_modified == before + 1 and again == many
    # The owner's token works on the status API too; another user's does not see it.
    with StatusClient(live_server.url, token()) as owner:
        assert owner.get(ids[1]) is not None
    with StatusClient(live_server.url, token("someone-else")) as other:
        assert other.get(ids[1]) is None
    with StatusClient(live_server.url, "wrong-key") as wrong, pytest.raises(Unauthorized):
        wrong.get(ids[0])


def test_status_client_lists_page_by_page(live_server: LiveServer, tmp_path: Path) -> None:
    ids = {"user-1": [], "user-2": []}  # type: dict[str, list[str]]
    for n, sub in enumerate(["user-1", "user-2", "user-1"]):
        with Uploader(live_server.url, token(sub), store=tmp_path) as up:
            ids[sub].append(up.upload(random_file(tmp_path / f"l{n}.bin", 500 + n)).id)
    with StatusClient(live_server.url, API_KEY) as status:
        mine = list(status.list(owner="user-1", page_size=1))
        assert [r["id"] for r in mine] == ids["user-1"]
        records, cursor = status.list_page(limit=2)
        assert len(records) == 2 and cursor is not None
        rest, last = status.list_page(limit=2, cursor=cursor)
        assert [r["id"] for r in records + rest] == [
            ids["user-1"][0],
            *ids["user-2"],
            ids["user-1"][1],
        ]
        assert last is None
        assert list(status.list(states=["expired"])) == []
    with StatusClient(live_server.url, token()) as owner, pytest.raises(Unauthorized):
        owner.list_page()


def test_status_client_single_get_uses_etag(live_server: LiveServer, tmp_path: Path) -> None:
    with Uploader(live_server.url, token(), store=tmp_path) as up:
        upload_id = up.upload(random_file(tmp_path / "f.bin", 2000)).id
    with StatusClient(live_server.url, API_KEY) as status:
        # Wait until the record stops changing (a worker may be processing it).
        status.wait(
            upload_id, timeout=30, poll_interval=0.05, until=["uploaded", "ready", "failed"]
        )
        record = status.get(upload_id)
        before = status.not_modified
        assert status.get(upload_id) == record
        assert status.not_modified == before + 1


def test_url_store_and_fingerprints(tmp_path: Path) -> None:
    store = JSONURLStore(tmp_path)
    assert store.path == tmp_path / "uploads.json"
    store.set_item("k", "http://x/files/1")
    assert JSONURLStore(tmp_path).get_item("k") == "http://x/files/1"
    store.path.write_text("{not json")  # a damaged file costs a fresh upload, not a crash
    assert store.get_item("k") is None
    store.set_item("k2", "http://x/files/2")
    assert store.items() == {"k2": "http://x/files/2"}

    data = io.BytesIO(b"a" * 3_000_000)
    same = io.BytesIO(b"a" * 3_000_000)
    other_tail = io.BytesIO(b"a" * 2_999_999 + b"b")
    one = SampleFingerprint("http://one/files/")
    assert one.get_fingerprint(data) == one.get_fingerprint(same)
    assert one.get_fingerprint(data) != one.get_fingerprint(other_tail)
    assert one.get_fingerprint(data) != SampleFingerprint("http://two/files/").get_fingerprint(data)
