"""A full disk is a clean, named refusal: 507 insufficient_storage, the bytes already
stored kept, offsets consistent, no stray files, /readyz reporting low space, and a
worker that fails a job on ENOSPC with a clear code and retries it later. On a real
tmpfs of 8 MiB (tests/disk_helpers.py), with a live server on both body paths."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TOKEN_SECRET, LiveServer, mint_token
from disk_helpers import fill, small_tmpfs, stray_files

from processors.failures import OutOfSpace
from processors.pipeline import PipelineContext, _out_of_space, mark_exhausted
from processors.publish import make_publisher
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store.base import UploadInfo

pytestmark = pytest.mark.one_path

MIB = 1024 * 1024
OCTETS = "application/offset+octet-stream"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as disk:
        yield disk


def tus(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_patch_that_fills_the_disk_is_507_and_resumes_once_space_frees(
    settings: Settings, small_disk: Path, fast_path: str
) -> None:
    on_disk = dataclasses.replace(settings, data_dir=small_disk / "data", min_free_bytes=MIB)
    server = LiveServer(on_disk, extra_env={"UPLOAD_FAST_PATH": fast_path}).start()
    try:
        token = mint_token(TOKEN_SECRET, "disk-user")
        data = os.urandom(6 * MIB)
        r = httpx.post(
            f"{server.url}/files/", headers=tus(token, **{"Upload-Length": str(len(data))})
        )
        assert r.status_code == 201
        url = f"{server.url}/files/{r.headers['location'].rsplit('/', 1)[-1]}"
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        filler = fill(small_disk, leave=2 * MIB)  # room for about a third of it

        r = httpx.patch(
            url,
            headers=tus(token, **{"Upload-Offset": "0", "Content-Type": OCTETS}),
            content=data,
            timeout=30,
        )
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        stored = int(r.headers["upload-offset"])
        assert 0 < stored < len(data)
        head = httpx.head(url, headers=tus(token))
        assert int(head.headers["upload-offset"]) == stored  # offsets consistent
        assert stray_files(small_disk) == []
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["space"].startswith("low")

        # A creation meanwhile leaves nothing behind either.
        fill_rest = fill(small_disk / "data", leave=0)
        before = sorted(p.name for p in (small_disk / "data" / "uploads").iterdir())
        r = httpx.post(f"{server.url}/files/", headers=tus(token, **{"Upload-Length": "10"}))
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        assert sorted(p.name for p in (small_disk / "data" / "uploads").iterdir()) == before
        assert stray_files(small_disk) == []
        fill_rest.unlink()

        # Space frees: the client resumes from HEAD's offset and the file is whole.
        filler.unlink()
        r = httpx.patch(
            url,
            headers=tus(token, **{"Upload-Offset": str(stored), "Content-Type": OCTETS}),
            content=data[stored:],
            timeout=30,
        )
        assert r.status_code == 204, r.text
        assert (small_disk / "data" / "uploads" / url.rsplit("/", 1)[-1]).read_bytes() == data
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        server.stop()


def test_the_worker_fails_a_job_on_enospc_with_a_code_and_retries(
    settings: Settings, small_disk: Path
) -> None:
    status = StatusStore(settings.status_dir, None)
    ctx = PipelineContext(settings, status, MemoryJobQueue(), make_publisher(settings))
    info = UploadInfo(id="full-disk-job", owner="u", length=5, offset=5)
    record = new_record(info)
    record["state"] = "processing"
    status.put(record)
    filler = fill(small_disk)
    try:
        with open(small_disk / "out.ts", "wb") as f:
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        error = _out_of_space(ctx, info.id, exc)
    else:
        pytest.fail("the tmpfs did not fill")
    filler.unlink()
    # Transient: Dramatiq retries it (only MediaError is `throws`); the status says why.
    assert isinstance(error, OutOfSpace)
    waiting = status.get(info.id)
    assert waiting and waiting["state"] == "processing"
    assert waiting["error"]["code"] == "insufficient_storage"
    # Retries run out: failed, with the same clear code.
    final = mark_exhausted(ctx, info.id, "OutOfSpace: disk full")
    assert final and final["state"] == "failed"
    assert final["error"]["code"] == "insufficient_storage"
