"""Small bounds: a malformed concat URL, a numeric-string `exp`, metrics series from
the route table only, metrics dirs of killed servers, a redo that finds its upload
gone, and the records of ended uploads retired after UPLOAD_RETENTION."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import httpx
import jwt
import pytest
from conftest import API_KEY, TOKEN_SECRET
from protocol_helpers import assert_error, tus
from tus_helpers import create, finished_upload, patch

from processors.pipeline import PipelineContext, process_upload
from processors.publish import make_publisher
from processors.sweeper import retire_ended_uploads, sweep_expired_uploads
from upload_service.core import metrics
from upload_service.core.errors import Unauthorized
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore
from upload_service.core.tokens import decode_token

pytestmark = pytest.mark.anyio


async def test_a_final_concat_naming_an_unclosed_ipv6_url_is_400(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    r = await client.post("/files/", headers=tus(make_token(), Upload_Concat="final;http://[::1"))
    assert_error(r, 400, "invalid_concat")


def test_a_token_whose_exp_is_a_numeric_string_is_refused() -> None:
    later = int(time.time()) + 600
    token = jwt.encode({"sub": "u", "exp": str(later)}, TOKEN_SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="exp must be a number"):
        decode_token(token, TOKEN_SECRET)
    boolean = jwt.encode({"sub": "u", "exp": True}, TOKEN_SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        decode_token(boolean, TOKEN_SECRET)
    good = jwt.encode({"sub": "u", "exp": later}, TOKEN_SECRET, algorithm="HS256")
    assert decode_token(good, TOKEN_SECRET).exp == later


def series(text: str) -> set[str]:
    return {
        line.split(" ")[0]
        for line in text.splitlines()
        if line.startswith("upload_http_request") and not line.startswith("#")
    }


async def test_junk_paths_and_methods_add_no_metrics_series(
    client: httpx.AsyncClient,
) -> None:
    for warm in range(2):  # the unmatched label's series exist after the first round
        await client.get(f"/warm-{warm}")
        await client.request("BREW", f"/warm-{warm}")
        await client.request("BREW", "/healthz")
        await client.get("/metrics")  # a scrape is counted once it answered
    before = series((await client.get("/metrics")).text)
    for n in range(100):
        await client.get(f"/junk/{n}/{'x' * (n % 7)}")
        await client.request(f"JUNK{n}", f"/healthz?{n}")
        await client.request("BREW", f"/other-{n}")
    after = series((await client.get("/metrics")).text)
    assert after == before
    labels = "\n".join(sorted(after))
    assert 'route="unmatched"' in labels and 'method="other"' in labels
    assert "junk" not in labels.lower() and "BREW" not in labels
    # Matched routes keep their template, never the id in the path.
    await client.get("/v1/uploads/someid", headers={"Authorization": f"Bearer {API_KEY}"})
    text = (await client.get("/metrics")).text
    assert 'route="/v1/uploads/{upload_id}"' in text and "someid" not in text


def test_a_killed_serves_metrics_dir_is_removed_at_the_next_start(tmp_path: Path) -> None:
    # A directory left by a `serve` that is gone (its pid is dead), and one of a live one.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"{metrics.SHARED_DIR_PREFIX}{dead.pid}-abc"
    (orphan / "sub").mkdir(parents=True)
    alive = tmp_path / f"{metrics.SHARED_DIR_PREFIX}{os.getpid()}-def"
    alive.mkdir()
    # One not named by a pid (an older `serve`'s, or someone else's) is not ours to judge.
    foreign = tmp_path / f"{metrics.SHARED_DIR_PREFIX}x7q2"
    foreign.mkdir()
    removed = metrics.remove_orphaned_dirs(tmp_path)
    assert removed == [orphan] and not orphan.exists()
    assert alive.exists() and foreign.exists()


def test_serve_makes_its_metrics_dir_named_by_its_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.SHARED_DIR_ENV, raising=False)
    with metrics.shared_by_processes():
        made = Path(os.environ[metrics.SHARED_DIR_ENV])
        assert made.name.startswith(f"{metrics.SHARED_DIR_PREFIX}{os.getpid()}-")
    assert not made.exists()


def test_a_redo_that_finds_its_upload_gone_removes_its_work_dir(
    settings: Settings, redis_client: object
) -> None:
    status = StatusStore(settings.status_dir, None)
    ctx = PipelineContext(settings, status, MemoryJobQueue(), make_publisher(settings))
    # A killed attempt's leftovers, of an upload that no longer exists at all...
    leftover = settings.work_dir / "gone-upload"
    (leftover / "out").mkdir(parents=True)
    (leftover / "out" / "segment.ts").write_bytes(b"x")
    assert process_upload("gone-upload", ctx) is None
    assert not leftover.exists()
    # ... and of one that was terminated meanwhile (a record, but settled).
    status.put({"id": "ended-upload", "state": "terminated", "error": None})
    (settings.work_dir / "ended-upload").mkdir(parents=True)
    process_upload("ended-upload", ctx)
    assert not (settings.work_dir / "ended-upload").exists()


async def test_the_sweep_retires_ended_uploads_records_after_the_retention(
    settings: Settings, make_token: Callable[..., str], jobs: MemoryJobQueue
) -> None:
    from protocol_helpers import app_client

    kept_settings = dataclasses.replace(settings, retention=3600)
    token = make_token()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with app_client(kept_settings, jobs) as client:
        deleted = await finished_upload(client, token, b"bytes")
        assert (await client.delete(f"/files/{deleted}", headers=tus(token))).status_code == 204
        abandoned = await create(client, token, 100)
        assert (await patch(client, token, abandoned, 0, b"a" * 10)).status_code == 204
        live = await create(client, token, 100)
        done = await finished_upload(client, token, b"done")
        expired_at = time.time() + settings.expiry + 10
        assert await anyio.to_thread.run_sync(
            sweep_expired_uploads, kept_settings, expired_at
        ) == sorted([abandoned, live])
        webhook_log = settings.data_dir / "webhooks" / f"{deleted}.jsonl"
        webhook_log.parent.mkdir(parents=True, exist_ok=True)
        webhook_log.write_text("{}\n")

        # Within the retention: nothing is removed, the ids still say what happened.
        assert await anyio.to_thread.run_sync(retire_ended_uploads, kept_settings) == []
        assert (await client.get(f"/v1/uploads/{deleted}", headers=headers)).json()[
            "state"
        ] == "terminated"
        assert (await client.head(f"/files/{abandoned}", headers=tus(token))).status_code == 410

        later = expired_at + 3600 + 10
        retired = await anyio.to_thread.run_sync(retire_ended_uploads, kept_settings, later)
        assert sorted(retired) == sorted([deleted, abandoned, live])
        for upload_id in retired:
            assert not (settings.status_dir / f"{upload_id}.json").exists()
            assert (
                await client.get(f"/v1/uploads/{upload_id}", headers=headers)
            ).status_code == 404
        assert not webhook_log.exists()
        assert not (settings.uploads_dir / f"{abandoned}.info").exists()
        assert (await client.head(f"/files/{abandoned}", headers=tus(token))).status_code == 404
        # A finished upload is never retired, however old.
        assert (await client.get(f"/v1/uploads/{done}", headers=headers)).status_code == 200
        assert sorted(p.name for p in settings.uploads_dir.iterdir()) == sorted(
            [done, f"{done}.info"]
        )
        # UPLOAD_RETENTION=0 keeps records for ever.
        off = dataclasses.replace(settings, retention=0)
        assert await anyio.to_thread.run_sync(retire_ended_uploads, off, later * 2) == []


def test_retention_and_other_bounds_come_from_the_environment() -> None:
    env = {
        "UPLOAD_RETENTION": "60",
        "UPLOAD_MAX_HEADER_BYTES": "8192",
        "UPLOAD_MAX_HEADERS": "50",
        "UPLOAD_HEADER_TIMEOUT": "5",
        "UPLOAD_MIN_BODY_RATE": "10",
        "UPLOAD_BODY_RATE_WINDOW": "3",
        "UPLOAD_MAX_UNFINISHED": "7",
        "UPLOAD_CREATION_RATE": "9",
        "UPLOAD_CREATION_WINDOW": "30",
        "UPLOAD_MIN_FREE_BYTES": "1000",
    }
    s = Settings.from_env(env, dotenv=Path("/nonexistent"))
    assert (s.retention, s.max_header_bytes, s.max_headers, s.header_timeout) == (60, 8192, 50, 5)
    assert (s.min_body_rate, s.body_rate_window, s.max_unfinished) == (10, 3, 7)
    assert (s.creation_rate, s.creation_window, s.min_free_bytes) == (9, 30, 1000)
    with pytest.raises(SystemExit, match="UPLOAD_MAX_HEADERS"):
        Settings.from_env({"UPLOAD_MAX_HEADERS": "2"}, dotenv=Path("/nonexistent"))
    assert re.match(r"\d+", str(Settings().retention))
