"""The B2 publisher against b2sdk's RawSimulator (the one allowed stand-in for B2)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from b2_helpers import MB, PART, FakeB2, make_fake_b2
from b2sdk.v2.exception import (
    AccessDenied,
    B2RequestTimeoutDuringUpload,
    MaxRetriesExceeded,
    ServiceError,
    TooManyRequests,
)

from processors import b2
from processors.b2 import B2Publisher
from processors.publish import LocalPublisher, make_publisher
from upload_service.core.b2client import original_content_type
from upload_service.core.media_types import media_type_for
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path

UPLOAD_ID = "up1"


@pytest.fixture
def fake_b2() -> FakeB2:
    return make_fake_b2()


@dataclass
class Files:
    items: list[tuple[Path, str]]
    sha1: dict[str, str]
    size: dict[str, int]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """One of each output kind and a 12 MB rendition (> two 5 MB parts); never the original."""
    work = tmp_path / "work" / UPLOAD_ID
    contents = {
        "hls/master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n",
        "hls/360p/index.m3u8": b"#EXTM3U\n#EXTINF:4.0,\nseg_000.ts\n",
        "hls/360p/seg_000.ts": os.urandom(300_000),
        "hls/360p/seg_001.ts": os.urandom(200_000),
        "hls/720p/init.m4s": os.urandom(1_000),
        "renditions/720p.mp4": os.urandom(12 * MB),
        "captions/en.vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n",
        "captions/en.srt": b"1\n00:00:00,000 --> 00:00:01,000\nhello\n",
        "transcript.json": b'{"text": "hello"}',
        "poster.jpg": os.urandom(20_000),
    }
    items = []
    for name, data in contents.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        items.append((path, name))
    return Files(
        items=items,
        sha1={n: hashlib.sha1(d).hexdigest() for n, d in contents.items()},
        size={n: len(d) for n, d in contents.items()},
    )


def assert_complete(fake: FakeB2, files: Files, prefix: str = "") -> None:
    """Every file once (a single version), right size, SHA-1 and type; nothing unfinished."""
    folder = f"{prefix}/{UPLOAD_ID}/" if prefix else f"{UPLOAD_ID}/"
    versions = fake.versions(folder)
    assert sorted(versions) == sorted(folder + name for _, name in files.items)
    for _, name in files.items:
        [version] = versions[folder + name]
        assert version.size == files.size[name]  # type: ignore[attr-defined]
        assert b2.stored_sha1(version) == files.sha1[name]
        assert version.content_type == media_type_for(name)  # type: ignore[attr-defined]
    assert fake.unfinished() == []


def b2_publisher(fake: FakeB2, files: Files, **options: object) -> B2Publisher:
    return fake.publisher(**options)


def test_content_types_by_extension() -> None:
    assert media_type_for("hls/master.m3u8") == "application/vnd.apple.mpegurl"
    assert media_type_for("a/seg.ts") == "video/mp2t"
    assert media_type_for("a/init.m4s") == "video/mp4"
    assert media_type_for("720p.mp4") == "video/mp4"
    assert media_type_for("audio.m4a") == "audio/mp4"
    assert media_type_for("en.vtt") == "text/vtt"
    assert media_type_for("en.srt") == "application/x-subrip"
    assert media_type_for("t.json") == "application/json"
    assert media_type_for("t.txt") == "text/plain; charset=utf-8"
    assert media_type_for("poster.jpg") == "image/jpeg"
    assert media_type_for("original") == "application/octet-stream"
    assert media_type_for("talk.html") == "application/octet-stream"
    assert media_type_for("x.svg") == "application/octet-stream"
    # The B2 store keeps a client's declared type for its own objects, if it is one.
    assert original_content_type("video/webm") == "video/webm"
    assert original_content_type(None) == "application/octet-stream"
    assert original_content_type("not a type\r\n") == "application/octet-stream"


def test_publish_puts_every_file_in_the_bucket(fake_b2: FakeB2, files: Files) -> None:
    seen: list[float] = []
    urls = b2_publisher(fake_b2, files).publish(UPLOAD_ID, files.items, seen.append)

    assert_complete(fake_b2, files)
    # The 12 MB rendition went through the large-file API (its SHA-1 in the
    # file info, as b2sdk sets it for large files); the rest as single uploads.
    large = fake_b2.bucket.get_file_info_by_name(f"{UPLOAD_ID}/renditions/720p.mp4")
    assert large.file_info["large_file_sha1"] == files.sha1["renditions/720p.mp4"]
    small = fake_b2.bucket.get_file_info_by_name(f"{UPLOAD_ID}/poster.jpg")
    assert small.content_sha1 == files.sha1["poster.jpg"]

    download = fake_b2.api.account_info.get_download_url()
    assert urls == {
        name: f"{download}/file/media-bucket/{UPLOAD_ID}/{name}" for _, name in files.items
    }
    # Progress by bytes: never backwards, ends at 100.
    assert seen == sorted(seen) and seen[-1] == 100.0 and len(seen) > 3
    # Local outputs gone once B2 confirmed them.
    assert [p for p, n in files.items if p.exists()] == []


def test_prefix_cdn_url_and_keep_local(fake_b2: FakeB2, files: Files) -> None:
    publisher = b2_publisher(
        fake_b2, files, prefix="/courses/", public_url="https://cdn.example.com/", keep_local=True
    )
    urls = publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert_complete(fake_b2, files, prefix="courses")
    assert urls["hls/master.m3u8"] == f"https://cdn.example.com/courses/{UPLOAD_ID}/hls/master.m3u8"
    assert all(path.exists() for path, _ in files.items)


def test_publish_again_uploads_nothing(fake_b2: FakeB2, files: Files) -> None:
    publisher = b2_publisher(fake_b2, files, keep_local=True)
    first = publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    ids = {n: v[0].id_ for n, v in fake_b2.versions().items()}  # type: ignore[attr-defined]
    seen: list[float] = []
    assert publisher.publish(UPLOAD_ID, files.items, seen.append) == first
    assert {n: v[0].id_ for n, v in fake_b2.versions().items()} == ids  # type: ignore[attr-defined]
    assert seen[-1] == 100.0
    assert_complete(fake_b2, files)


def test_changed_file_replaces_the_old_version(fake_b2: FakeB2, files: Files) -> None:
    publisher = b2_publisher(fake_b2, files, keep_local=True)
    publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    path = next(p for p, n in files.items if n == "captions/en.vtt")
    path.write_bytes(b"WEBVTT\n\n00:00.000 --> 00:02.000\nhello again\n")
    files.sha1["captions/en.vtt"] = hashlib.sha1(path.read_bytes()).hexdigest()
    files.size["captions/en.vtt"] = path.stat().st_size
    publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert_complete(fake_b2, files)


def test_transient_upload_errors_are_retried(fake_b2: FakeB2, files: Files) -> None:
    # b2sdk tries each upload 5 times itself; 8 failures in a row exhaust that
    # (MaxRetriesExceeded) and the publisher's own backoff must carry on.
    errors: list[Exception] = [
        ServiceError("503 service_unavailable"),
        B2RequestTimeoutDuringUpload("timed out"),
    ] * 4
    # b2sdk does not retry a 429 on upload at all: that is left to us, and
    # its Retry-After is honoured.
    errors.append(TooManyRequests(retry_after_seconds=7))
    fake_b2.sim.set_upload_errors(errors)
    publisher = b2_publisher(fake_b2, files, threads=1)
    publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert fake_b2.sim.upload_errors == []
    assert_complete(fake_b2, files)
    assert len(fake_b2.sleeps) == 2  # backed off before trying again, twice
    assert 0 < fake_b2.sleeps[0] < 7 <= fake_b2.sleeps[1]


def test_permanent_errors_are_not_retried(fake_b2: FakeB2, files: Files) -> None:
    fake_b2.sim.set_upload_errors([AccessDenied()])
    publisher = b2_publisher(fake_b2, files, threads=1)
    with pytest.raises(AccessDenied):
        publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert fake_b2.sleeps == []
    assert all(path.exists() for path, _ in files.items)  # nothing removed on failure


def test_retries_exhausted_then_publish_again(fake_b2: FakeB2, files: Files) -> None:
    # 5 b2sdk attempts x 2 publisher attempts: the first small file fails for good.
    fake_b2.sim.set_upload_errors([ServiceError("500 internal_error") for _ in range(10)])
    publisher = b2_publisher(fake_b2, files, threads=1, attempts=2)
    with pytest.raises(MaxRetriesExceeded):
        publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert all(path.exists() for path, _ in files.items)
    publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert_complete(fake_b2, files)


class Crash(Exception):
    pass


def crash_after(percent: float) -> Callable[[float], None]:
    def on_progress(value: float) -> None:
        if value > percent:
            raise Crash(value)

    return on_progress


def test_crash_between_files_then_retry(fake_b2: FakeB2, files: Files) -> None:
    # The rendition goes first, then a segment: crash once the rendition's
    # share of the bytes is done, while the segment goes up.
    files.items.sort(key=lambda item: item[1] not in ("renditions/720p.mp4", "hls/360p/seg_000.ts"))
    files.items.sort(key=lambda item: item[1] != "renditions/720p.mp4")
    share = 100 * files.size["renditions/720p.mp4"] / sum(files.size.values())
    publisher = b2_publisher(fake_b2, files, threads=1)
    with pytest.raises(Crash):
        publisher.publish(UPLOAD_ID, files.items, crash_after(share))
    before = fake_b2.versions()
    assert list(before) == [f"{UPLOAD_ID}/renditions/720p.mp4"]

    publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert_complete(fake_b2, files)
    # What was already there was not uploaded a second time.
    after = fake_b2.versions()
    for name, versions in before.items():
        assert after[name][0].id_ == versions[0].id_  # type: ignore[attr-defined]


def test_crash_inside_a_large_file_leaves_no_unfinished_file(fake_b2: FakeB2, files: Files) -> None:
    files.items.sort(key=lambda item: item[1] != "renditions/720p.mp4")
    publisher = b2_publisher(fake_b2, files, threads=1)
    with pytest.raises(Crash):
        publisher.publish(UPLOAD_ID, files.items, crash_after(20))  # part 1 of 2
    [unfinished] = fake_b2.unfinished()
    assert f"{UPLOAD_ID}/renditions/720p.mp4" not in fake_b2.versions()

    publisher.publish(UPLOAD_ID, files.items, lambda p: None)
    assert_complete(fake_b2, files)
    # Same name and SHA-1: b2sdk resumed that large file instead of starting over.
    [version] = fake_b2.versions()[f"{UPLOAD_ID}/renditions/720p.mp4"]
    assert version.id_ == unfinished.file_id  # type: ignore[attr-defined]


def test_stale_unfinished_large_files_are_cancelled(fake_b2: FakeB2, files: Files) -> None:
    # Left by an earlier run that died: one under this upload, another upload's
    # one (not ours to touch).
    large_file = fake_b2.api.services.large_file
    stale = large_file.start_large_file(
        fake_b2.bucket.id_, f"{UPLOAD_ID}/renditions/old.mp4", "video/mp4", {}
    )
    other = large_file.start_large_file(fake_b2.bucket.id_, "up2/video.mp4", "video/mp4", {})
    b2_publisher(fake_b2, files).publish(UPLOAD_ID, files.items, lambda p: None)
    remaining = [f.file_id for f in fake_b2.unfinished()]  # type: ignore[attr-defined]
    assert stale.file_id not in remaining
    assert remaining == [other.file_id]


def test_make_publisher_picks_b2_when_configured(
    tmp_path: Path, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_fake_b2()
    monkeypatch.setattr(b2, "api_factory", lambda settings: fake.api)
    base = Settings(data_dir=tmp_path / "data")
    assert isinstance(make_publisher(base), LocalPublisher)
    settings = base.with_changes(
        b2_key_id="id",
        b2_key="key",
        b2_bucket="media-bucket",
        b2_prefix="p",
        b2_part_size=PART,
        media_access="public",
        keep_local=True,
    )
    publisher = make_publisher(settings)
    assert isinstance(publisher, B2Publisher)
    urls = publisher.publish(UPLOAD_ID, files.items[1:], lambda p: None)
    assert urls["poster.jpg"].endswith(f"/file/media-bucket/p/{UPLOAD_ID}/poster.jpg")
    assert len(fake.versions("p/")) == len(files.items) - 1
    # Signed playback: the same objects, reached through the server's /media.
    signed = settings.with_changes(
        media_access="signed", public_url="https://up.example.com", token_secret="s"
    )
    urls = make_publisher(signed).publish(UPLOAD_ID, files.items[1:], lambda p: None)
    assert urls["poster.jpg"] == f"https://up.example.com/media/{UPLOAD_ID}/poster.jpg"
    assert len(fake.versions("p/")) == len(files.items) - 1
