"""The pipeline's functions in-process: real files, real ffmpeg, real Redis, real tus uploads.

The actor wiring and the worker process are covered by test_pipeline_e2e.py;
here the pipeline runs in the test's thread so each failure mode can be set up
exactly (a stale work dir, a failing publisher, a token's kinds).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from media_helpers import make_audio, make_text_file, make_truncated_mp4, make_video
from pipeline_helpers import tus_upload
from redis import Redis

from processors.failures import CorruptMedia, FfmpegTimeout, ProcessingLimit, UnsupportedMedia
from processors.ffmpeg_run import Throttle, parse_progress_line, run_ffmpeg
from processors.media_policy import MediaLimits
from processors.media_tools import MediaTools
from processors.pipeline import PipelineContext, mark_exhausted, process_upload, transcode_timeout
from processors.probe import probe
from processors.publish import PublishItem, make_publisher
from processors.transcode import choose_ladder
from processors.workdir import sweep_stale
from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import Record, StatusStore

pytestmark = pytest.mark.one_path


class RecordingStatus(StatusStore):
    """The real store, remembering every progress it wrote."""

    def __init__(self, directory: Path, redis: Redis) -> None:
        super().__init__(directory, redis)
        self.progress: list[dict[str, Any]] = []

    def advance(self, upload_id: str, **changes: Any) -> Record:
        if changes.get("progress"):
            self.progress.append(dict(changes["progress"]))
        return super().advance(upload_id, **changes)


class CountingPublisher:
    def __init__(self, settings: Settings, failures: int = 0) -> None:
        self.inner = make_publisher(settings)
        self.calls = 0
        self.failures = failures

    def publish(
        self, upload_id: str, items: list[PublishItem], on_progress: Callable[[float], None]
    ) -> dict[str, str]:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage answered 503")
        return self.inner.publish(upload_id, items, on_progress)

    def add(
        self, upload_id: str, items: list[PublishItem], on_progress: Callable[[float], None]
    ) -> dict[str, str]:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage answered 503")
        return self.inner.add(upload_id, items, on_progress)

    def unpublish(self, upload_id: str) -> None:
        self.inner.unpublish(upload_id)


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    return settings.with_changes(transcribe=False)


def make_ctx(settings: Settings, publisher: Any = None) -> PipelineContext:
    return PipelineContext(
        settings=settings,
        status=RecordingStatus(settings.status_dir, Redis.from_url(settings.redis_url)),
        jobs=MemoryJobQueue(),
        publisher=publisher or CountingPublisher(settings),
    )


def events(ctx: PipelineContext) -> list[dict[str, Any]]:
    assert isinstance(ctx.jobs, MemoryJobQueue)
    return [args[0] for actor, args in ctx.jobs.sent if actor == "deliver_webhook"]


# -- the whole pipeline ------------------------------------------------------------


@pytest.mark.anyio
async def test_ready_then_idempotent(
    tmp_path: Path, quiet_settings: Settings, client: httpx.AsyncClient, make_token: Callable
) -> None:
    settings = quiet_settings.with_changes(webhook_url="http://127.0.0.1:9/hooks")
    clip = make_video(tmp_path / "a.mp4", 5, "854x480")
    upload_id = await tus_upload(client, make_token(), clip)
    ctx = make_ctx(settings)
    # A SIGKILLed earlier attempt left its scratch files behind.
    stale = settings.work_dir / upload_id / "out"
    stale.mkdir(parents=True)
    (stale / "junk.ts").write_bytes(b"half a segment")

    record = process_upload(upload_id, ctx)
    assert record is not None and record["state"] == "ready"
    assert not (settings.work_dir / upload_id).exists()
    published = sorted(
        str(p.relative_to(settings.media_dir / upload_id))
        for p in (settings.media_dir / upload_id).rglob("*")
        if p.is_file()
    )
    assert "out/junk.ts" not in published and "junk.ts" not in published
    assert {"video.mp4", "poster.jpg", "hls/master.m3u8"} <= set(published)
    assert not [name for name in published if name.startswith("original")]
    assert record["outputs"]["hls"] == f"/media/{upload_id}/hls/master.m3u8"
    assert record["outputs"]["original"] == f"/files/{upload_id}"

    stages = [p["stage"] for p in ctx.status.progress]  # type: ignore[attr-defined]
    assert list(dict.fromkeys(stages)) == ["probe", "transcode", "publish"]
    transcode_done = [p["percent"] for p in ctx.status.progress if p["stage"] == "transcode"]  # type: ignore[attr-defined]
    assert transcode_done == sorted(transcode_done) and transcode_done[-1] >= 95

    sent = events(ctx)
    assert [e["type"] for e in sent] == ["media.playable", "media.ready"]
    playable = sent[0]["data"]
    # Playable: the smallest rung alone, in a master of its own; the rest came later.
    assert playable["state"] == "playable"
    assert [r["height"] for r in playable["outputs"]["renditions"]] == [360]
    assert playable["outputs"]["hls"] == record["outputs"]["hls"]
    assert sent[1]["data"]["state"] == "ready"
    assert sent[1]["data"]["outputs"] == record["outputs"]
    assert [r["height"] for r in record["outputs"]["renditions"]] == [480, 360]
    assert record["outputs"]["storyboard"] == f"/media/{upload_id}/storyboard.vtt"
    assert record["progress"] == {"stage": "publish", "percent": 100.0, "eta_s": 0}
    assert all("eta_s" in p for p in ctx.status.progress[1:])  # type: ignore[attr-defined]

    # Run again (a redelivered message): no work, no event, the same record.
    publisher = ctx.publisher
    assert isinstance(publisher, CountingPublisher)
    calls = publisher.calls
    again = process_upload(upload_id, ctx)
    assert again == record
    assert publisher.calls == calls
    assert len(events(ctx)) == 2


@pytest.mark.anyio
async def test_transient_failure_raises_for_retry_then_resumes(
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    upload_id = await tus_upload(client, make_token(), make_audio(tmp_path / "a.m4a", 3))
    publisher = CountingPublisher(quiet_settings, failures=1)
    ctx = make_ctx(quiet_settings, publisher)
    with pytest.raises(ConnectionError):
        process_upload(upload_id, ctx)
    record = ctx.status.get(upload_id)
    assert record is not None
    # Not failed: Dramatiq retries it, from the checkpoint kept in the work dir.
    assert record["state"] == "processing" and record["error"] is None
    manifest = quiet_settings.work_dir / upload_id / "manifest.json"
    assert json.loads(manifest.read_text())["runs"] == {"audio": 1}

    ready = process_upload(upload_id, ctx)
    assert ready is not None and ready["state"] == "ready"
    assert ready["media"]["kind"] == "audio"
    assert publisher.calls == 2
    # The retry published what the first attempt had made: the audio was not encoded again.
    (ready_log,) = [r for r in caplog.records if r.msg == "pipeline.ready"]
    assert ready_log.fields["resumed"] is True  # type: ignore[attr-defined]
    assert ready_log.fields["runs"] == {"audio": 1}  # type: ignore[attr-defined]
    assert not (quiet_settings.work_dir / upload_id).exists()


@pytest.mark.anyio
async def test_retries_exhausted_marks_processing_failed(
    tmp_path: Path, quiet_settings: Settings, client: httpx.AsyncClient, make_token: Callable
) -> None:
    settings = quiet_settings.with_changes(webhook_url="http://127.0.0.1:9/hooks")
    upload_id = await tus_upload(client, make_token(), make_audio(tmp_path / "a.m4a", 2))
    ctx = make_ctx(settings, CountingPublisher(settings, failures=5))
    with pytest.raises(ConnectionError):
        process_upload(upload_id, ctx)
    record = mark_exhausted(ctx, upload_id, "ConnectionError: storage answered 503")
    assert record is not None and record["state"] == "failed"
    assert record["error"]["code"] == "processing_failed"
    assert "storage answered 503" in record["error"]["message"]
    assert [e["type"] for e in events(ctx)] == ["media.failed"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("make", "kinds", "code"),
    [
        (lambda d: make_text_file(d / "x.mp4"), None, "unsupported_media"),
        (lambda d: make_truncated_mp4(d / "x.mp4"), None, "corrupt_media"),
        (lambda d: make_video(d / "x.mp4", 1, "160x90"), ["audio"], "unsupported_media"),
        (lambda d: make_audio(d / "x.m4a", 1), ["video"], "unsupported_media"),
    ],
    ids=["text", "truncated", "video-for-audio-token", "audio-for-video-token"],
)
async def test_bad_media_fails_once_without_publishing(
    tmp_path: Path,
    quiet_settings: Settings,
    client: httpx.AsyncClient,
    make_token: Callable,
    make: Callable[[Path], Path],
    kinds: list[str] | None,
    code: str,
) -> None:
    settings = quiet_settings.with_changes(webhook_url="http://127.0.0.1:9/hooks")
    token = make_token(kinds=kinds) if kinds else make_token()
    upload_id = await tus_upload(client, token, make(tmp_path))
    ctx = make_ctx(settings)
    record = process_upload(upload_id, ctx)  # returns: nothing for Dramatiq to retry
    assert record is not None and record["state"] == "failed"
    assert record["error"]["code"] == code and record["error"]["message"]
    assert record["outputs"] == {}
    assert not (settings.media_dir / upload_id).exists()
    assert not (settings.work_dir / upload_id).exists()
    assert [e["type"] for e in events(ctx)] == ["media.failed"]
    # A permanent failure stays put when the message comes again.
    assert process_upload(upload_id, ctx) == record
    assert len(events(ctx)) == 1


@pytest.mark.anyio
async def test_video_without_audio(
    tmp_path: Path, settings: Settings, client: httpx.AsyncClient, make_token: Callable
) -> None:
    clip = make_video(tmp_path / "silent.mp4", 3, "854x480", with_audio=False)
    upload_id = await tus_upload(client, make_token(), clip)
    ctx = make_ctx(settings)  # transcription on: skipped, as there is no audio
    record = process_upload(upload_id, ctx)
    assert record is not None and record["state"] == "ready"
    assert [r["height"] for r in record["outputs"]["renditions"]] == [480, 360]
    assert "captions" not in record["outputs"]
    stages = {p["stage"] for p in ctx.status.progress}  # type: ignore[attr-defined]
    assert "transcribe" not in stages
    master = (settings.media_dir / upload_id / "hls/master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF") == 2 and "mp4a" not in master


@pytest.mark.anyio
@pytest.mark.slow
async def test_speech_gets_captions_and_transcript(
    tmp_path: Path, settings: Settings, client: httpx.AsyncClient, make_token: Callable
) -> None:
    text = "Welcome to the course. Today we learn how rivers shape the land."
    clip = make_video(tmp_path / "talk.mp4", 6, "320x180", speech=text)
    upload_id = await tus_upload(client, make_token(), clip)
    ctx = make_ctx(settings)
    record = process_upload(upload_id, ctx)
    assert record is not None and record["state"] == "ready"
    outputs = record["outputs"]
    assert [(c["lang"], c["format"]) for c in outputs["captions"]] == [("en", "vtt"), ("en", "srt")]
    base = settings.media_dir / upload_id
    vtt = (base / outputs["captions"][0]["url"].split(f"/{upload_id}/", 1)[1]).read_text()
    assert vtt.startswith("WEBVTT") and "river" in vtt.lower()
    transcript = json.loads((base / "transcript.json").read_text())
    assert outputs["transcript"].endswith("/transcript.json") and transcript
    assert "SUBTITLES" in (base / "hls/master.m3u8").read_text()


# -- the parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "heights"),
    [
        ((1920, 1080), [1080, 720, 480, 360]),
        ((1280, 720), [720, 480, 360]),
        ((640, 360), [360]),
        ((1000, 500), [480, 360]),
        ((320, 180), [180]),
        ((1080, 1920), [1920, 1280, 854, 640]),  # portrait: rungs on the short side
    ],
)
def test_ladder_is_never_upscaled(size: tuple[int, int], heights: list[int]) -> None:
    ladder = choose_ladder(*size)
    assert [r.height for r in ladder] == heights
    assert all(r.width <= size[0] and r.height <= size[1] for r in ladder)
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in ladder)
    assert [r.bitrate for r in ladder] == sorted((r.bitrate for r in ladder), reverse=True)


def test_probe_tells_unsupported_from_corrupt(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "ok.mp4", 2, "320x180")
    info = probe(clip)
    assert (info.kind, info.width, info.height, info.has_audio) == ("video", 320, 180, True)
    # Not faststart, cut before its index: the container is recognised, its data is not.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(CorruptMedia):
        probe(cut)
    with pytest.raises(CorruptMedia, match="cannot be decoded"):
        probe(make_truncated_mp4(tmp_path / "fs.mp4"))
    picture = tmp_path / "still.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1"]
        + [str(picture)],
        check=True,
    )
    with pytest.raises(UnsupportedMedia, match="not audio or video"):
        probe(picture)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedMedia, match="empty"):
        probe(empty)


def test_progress_lines_and_throttle() -> None:
    assert parse_progress_line("out_time_us=2500000\n", 10.0) == 25.0
    assert parse_progress_line("out_time_us=N/A", 10.0) is None
    assert parse_progress_line("frame=12", 10.0) is None
    assert parse_progress_line("out_time_us=99000000", 10.0) == 100.0
    written: list[float] = []
    throttle = Throttle(written.append, interval=3600)
    for percent in (1.0, 2.0, 3.0, 100.0):
        throttle(percent)
    assert written == [1.0, 100.0]


def test_time_limit_scales_with_duration_and_stops_ffmpeg(
    tmp_path: Path, settings: Settings
) -> None:
    assert transcode_timeout(settings, None) == settings.transcode_timeout_min
    assert transcode_timeout(settings, 3600) == 3600 * settings.transcode_timeout_factor
    source = make_text_file(tmp_path / "unused")
    with pytest.raises(FfmpegTimeout):
        run_ffmpeg(
            ["-re", "-f", "lavfi", "-i", "testsrc=duration=30", "-f", "null", "-"],
            tools=MediaTools(source, tmp_path),
            duration=30,
            timeout=0.5,
            log_path=tmp_path / "ffmpeg.log",
        )


def test_a_run_over_its_cpu_time_is_stopped_by_the_kernel(tmp_path: Path) -> None:
    """The CPU-time rlimit, not the wall clock, ends a run that costs too much."""
    tools = MediaTools(make_text_file(tmp_path / "unused"), tmp_path, limits=MediaLimits(cpu_min=1))
    with pytest.raises(ProcessingLimit, match="CPU time") as refused:
        run_ffmpeg(
            ["-f", "lavfi", "-i", "testsrc2=size=1280x720", "-c:v", "libx264", "-f", "null", "-"],
            tools=tools,
            duration=1,
            timeout=600,
            log_path=tmp_path / "ffmpeg.log",
        )
    assert refused.value.code == "processing_limit"


def test_worker_start_sweeps_only_long_dead_work_dirs(tmp_path: Path) -> None:
    old, fresh = tmp_path / "killed-long-ago", tmp_path / "running-now"
    for path in (old, fresh):
        (path / "out").mkdir(parents=True)
    long_ago = time.time() - 2 * 86400
    os.utime(old, (long_ago, long_ago))
    assert sweep_stale(tmp_path, older_than=86400) == ["killed-long-ago"]
    assert not old.exists() and fresh.exists()
