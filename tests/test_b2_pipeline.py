"""The whole pipeline, in-process, publishing to B2 (b2sdk's RawSimulator)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from b2_helpers import FakeB2, make_fake_b2
from media_helpers import make_video

from processors import b2
from processors.b2 import B2Publisher
from processors.pipeline import PipelineContext, process_upload
from processors.publish import make_publisher
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.media_types import media_type_for
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store import LocalStore, UploadInfo
from upload_service.core.store.body import ChunkBody

pytestmark = pytest.mark.one_path

UPLOAD_ID = "clip1"


def finished_upload(settings: Settings, source: Path) -> UploadInfo:
    """What the tus server leaves behind when an upload completes."""
    data = source.read_bytes()
    info = UploadInfo(
        id=UPLOAD_ID,
        owner="user-1",
        length=len(data),
        metadata={"filename": "lecture.mp4", "filetype": "video/quicktime"},
    )
    store = LocalStore(settings.uploads_dir)

    async def body() -> AsyncIterator[bytes]:
        yield data

    async def upload() -> None:
        await store.create(info)
        info.offset = await store.write(info, ChunkBody(body()), len(data))

    anyio.run(upload)
    return info


def urls_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from urls_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from urls_in(item)


def read_object(fake: FakeB2, key: str) -> bytes:
    buffer = io.BytesIO()
    fake.bucket.download_file_by_name(key).save(buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_pipeline_publishes_every_output_to_b2(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_fake_b2()
    monkeypatch.setattr(b2, "api_factory", lambda s: fake.api)
    settings = settings.with_changes(
        transcribe=False,
        b2_key_id="key-id",
        b2_key="key",
        b2_bucket=fake.bucket.name,
        b2_prefix="media",
        b2_public_url="https://cdn.example.com",
        media_access="public",  # URLs straight to the bucket (signed: test_b2_media.py)
        b2_part_size=5 * 1024 * 1024,
    )
    source = make_video(tmp_path / "clip.mp4", seconds=4, size="320x180")
    info = finished_upload(settings, source)
    status = StatusStore(settings.status_dir, None)
    status.put(new_record(info))
    publisher = make_publisher(settings)
    assert isinstance(publisher, B2Publisher)
    ctx = PipelineContext(settings, status, MemoryJobQueue(), publisher)

    record = process_upload(UPLOAD_ID, ctx)

    assert record is not None and record["state"] == "ready", record
    assert record["progress"] == {"stage": "publish", "percent": 100.0, "eta_s": 0}
    outputs = record["outputs"]
    cdn = f"https://cdn.example.com/media/{UPLOAD_ID}/"
    # The original is private: its URL is the download endpoint, never the bucket.
    assert outputs["original"] == f"/files/{UPLOAD_ID}"
    urls = list(urls_in({k: v for k, v in outputs.items() if k != "original"}))
    assert outputs["hls"] and outputs["renditions"]
    assert all(url.startswith(cdn) for url in urls), urls

    folder = f"media/{UPLOAD_ID}/"
    stored = {v.file_name: v for v, _ in fake.bucket.ls(folder, recursive=True)}
    for url in urls:
        assert folder + url.removeprefix(cdn) in stored, url
    # Not one object holds the uploaded bytes, under whatever name.
    source_sha1 = hashlib.sha1(source.read_bytes()).hexdigest()
    assert all(b2.stored_sha1(v) != source_sha1 for v in stored.values())
    assert not any(name.removeprefix(folder).startswith("original") for name in stored)
    # Every object carries the type of its extension.
    for name, version in stored.items():
        assert version.content_type == media_type_for(name), name
    # The HLS tree is complete: every playlist and segment it names is there.
    master_key = folder + outputs["hls"].removeprefix(cdn)
    pending = [master_key]
    seen = set()
    while pending:
        key = pending.pop()
        seen.add(key)
        base = key.rsplit("/", 1)[0]
        for line in read_object(fake, key).decode().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                child = f"{base}/{line}"
                assert child in stored, child
                if child.endswith(".m3u8") and child not in seen:
                    pending.append(child)
    assert any(k.endswith(".ts") or k.endswith(".m4s") for k in stored)
    assert fake.unfinished() == []
    # B2 holds them now: the work dir is gone, the tus upload itself stays.
    assert (settings.uploads_dir / UPLOAD_ID).exists()
