"""UPLOAD_STORE=b2 wired through every process: server, pipeline and sweeper.

B2 is b2sdk's RawSimulator; everything else is real (ASGI app, Redis, ffmpeg).
The server, the pipeline and the sweeper each get their own store from
`make_store`, as separate processes would, sharing only the bucket.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from b2_helpers import FakeB2, make_fake_b2
from conftest import settings_env
from media_helpers import make_video
from redis import Redis
from tus_helpers import checksum, create, head, patch

from processors import b2
from processors.b2 import B2Publisher
from processors.pipeline import PipelineContext, process_upload
from processors.publish import make_publisher
from processors.sweeper import sweep_expired_uploads
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore
from upload_service.core.store import LocalStore, UploadStore
from upload_service.core.store.b2 import B2Store
from upload_service.core.store.factory import make_store
from upload_service.http.app import create_app
from upload_service.http.services import Services

# Small parts so that a short clip still spans several B2 large-file parts
# (the simulator accepts parts down to 200 bytes; real B2 wants 5 MB).
PART = 8 * 1024
MISSING_B2 = "UPLOAD_STORE=b2 needs the B2 settings"


@pytest.fixture
def fake_b2(monkeypatch: pytest.MonkeyPatch) -> FakeB2:
    fake = make_fake_b2()
    monkeypatch.setattr(b2, "api_factory", lambda s: fake.api)  # the B2 publisher's hook
    return fake


@pytest.fixture
def b2_settings(settings: Settings, fake_b2: FakeB2) -> Settings:
    return settings.with_changes(
        upload_store="b2",
        transcribe=False,
        b2_key_id="key-id",
        b2_key="key",
        b2_bucket=fake_b2.bucket.name,
        b2_prefix="media",
        b2_public_url="https://cdn.example.com",
        media_access="public",  # URLs straight to the bucket (signed: test_b2_media.py)
        b2_part_size=PART,
    )


def b2_store(settings: Settings, fake: FakeB2) -> UploadStore:
    """What `make_store` builds in a process of its own, on the simulated account."""
    return make_store(settings, api_factory=lambda: fake.api)


@pytest.fixture
async def b2_client(
    b2_settings: Settings, fake_b2: FakeB2, jobs: MemoryJobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    services = Services.from_settings(b2_settings, jobs=jobs, store=b2_store(b2_settings, fake_b2))
    assert isinstance(services.store, B2Store)
    app = create_app(b2_settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
    await services.aclose()


def files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


@pytest.mark.slow
@pytest.mark.anyio
async def test_upload_to_b2_store_then_pipeline_ends_ready(
    b2_settings: Settings,
    b2_client: httpx.AsyncClient,
    fake_b2: FakeB2,
    jobs: MemoryJobQueue,
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings = b2_settings
    clip = make_video(tmp_path / "clip.mp4", seconds=2, size="320x180")
    data = clip.read_bytes()
    assert len(data) > 3 * PART
    token = make_token()
    upload_id = await create(
        b2_client,
        token,
        len(data),
        **{"Upload-Metadata": "filename bGVjdHVyZS5tcDQ=,filetype dmlkZW8vbXA0"},
    )
    tus_folder = f"media/tus/{upload_id}/"
    # Several PATCHes of odd sizes, one checksummed.
    cuts = [0, PART + 17, 2 * PART + 500, 3 * PART + 1, len(data)]
    for i, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        extra = {"Upload-Checksum": checksum("sha1", data[start:end])} if i == 1 else {}
        r = await patch(b2_client, token, upload_id, start, data[start:end], **extra)
        assert r.status_code == 204, r.text
        assert r.headers["Upload-Offset"] == str(end)
        if i == 1:
            # Mid-upload the bytes are already B2 parts of an unfinished large file.
            [unfinished] = fake_b2.unfinished()
            assert unfinished.file_name == tus_folder + "data"  # type: ignore[attr-defined]
            parts = list(fake_b2.api.services.large_file.list_parts(unfinished.file_id))  # type: ignore[attr-defined]
            assert [p.content_length for p in parts] == [PART, PART]
    assert (await head(b2_client, token, upload_id)).headers["Upload-Offset"] == str(len(data))
    assert ("process_upload", (upload_id,)) in jobs.sent
    assert fake_b2.unfinished() == []

    # The worker: its own store and publisher from the same settings.
    store = b2_store(settings, fake_b2)
    publisher = make_publisher(settings)
    assert isinstance(publisher, B2Publisher)
    status = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    ctx = PipelineContext(settings, status, MemoryJobQueue(), publisher, store=store)
    record = await anyio.to_thread.run_sync(process_upload, upload_id, ctx)

    assert record is not None and record["state"] == "ready", record
    outputs = record["outputs"]
    assert outputs["hls"] and outputs["renditions"]
    assert record["media"]["kind"] == "video"
    # The original stays in the store, private: never published from the fetched copy.
    assert outputs["original"] == f"/files/{upload_id}"
    published = fake_b2.versions(f"media/{upload_id}/")
    assert (
        published and outputs["hls"] == f"https://cdn.example.com/media/{upload_id}/hls/master.m3u8"
    )
    sha1 = hashlib.sha1(data).hexdigest()
    assert all(b2.stored_sha1(v) != sha1 for [v, *_] in published.values())
    # The tus upload itself lives in B2 only: nothing on this machine's disk.
    [stored] = fake_b2.versions(tus_folder)[tus_folder + "data"]
    assert stored.size == len(data)  # type: ignore[attr-defined]
    assert files_under(settings.uploads_dir) == []
    assert not (settings.work_dir / upload_id).exists()
    assert files_under(settings.data_dir / "spool") == []
    assert fake_b2.unfinished() == []


@pytest.mark.anyio
async def test_sweeper_expires_abandoned_b2_upload(
    b2_settings: Settings,
    b2_client: httpx.AsyncClient,
    fake_b2: FakeB2,
    make_token: Callable[..., str],
) -> None:
    token = make_token()
    stale = await create(b2_client, token, 3 * PART)
    r = await patch(b2_client, token, stale, 0, os.urandom(PART + 5))
    assert r.status_code == 204
    finished = await create(b2_client, token, 100)
    assert (await patch(b2_client, token, finished, 0, os.urandom(100))).status_code == 204

    later = time.time() + b2_settings.expiry + 60  # both idle past UPLOAD_EXPIRY by then
    store = b2_store(b2_settings, fake_b2)
    swept = await anyio.to_thread.run_sync(sweep_expired_uploads, b2_settings, later, store)

    assert swept == [stale]  # the finished one is never touched
    assert (await head(b2_client, token, stale)).status_code == 410
    assert (await head(b2_client, token, finished)).status_code == 200
    status = StatusStore(b2_settings.status_dir, Redis.from_url(b2_settings.redis_url))
    assert (status.get(stale) or {})["state"] == "expired"
    # Only the info stays (for the 410); no parts, no tail, nothing unfinished.
    assert sorted(fake_b2.versions(f"media/tus/{stale}/")) == [f"media/tus/{stale}/info"]
    assert fake_b2.unfinished() == []


def test_b2_store_without_b2_settings_fails_at_start(settings: Settings) -> None:
    bare = settings.with_changes(upload_store="b2")
    with pytest.raises(SystemExit, match=f"{MISSING_B2}: B2_KEY_ID, B2_APPLICATION_KEY, B2_BUCKET"):
        create_app(bare)
    with pytest.raises(SystemExit, match=f"{MISSING_B2}: B2_BUCKET not set"):
        make_store(bare.with_changes(b2_key_id="id", b2_key="key"))
    with pytest.raises(SystemExit, match="UPLOAD_STORE must be one of local, b2, got 's3'"):
        Services.from_settings(settings.with_changes(upload_store="s3"))


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_cli_refuses_b2_store_without_b2_settings(settings: Settings, command: str) -> None:
    env = settings_env(settings) | {"UPLOAD_STORE": "B2"}  # the value is case-insensitive
    exe = Path(sys.executable).with_name("upload-service")
    done = subprocess.run(
        [str(exe), command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert MISSING_B2 in done.stderr, done.stderr


def test_local_store_is_the_default(settings: Settings, tmp_path: Path) -> None:
    from_env = Settings.from_env({}, dotenv=tmp_path / "no.env")
    assert from_env.upload_store == "local"
    store = make_store(settings)
    assert isinstance(store, LocalStore) and store.directory == settings.uploads_dir
    assert (
        Settings.from_env({"UPLOAD_STORE": " B2 "}, dotenv=tmp_path / "no.env").upload_store == "b2"
    )
