"""The parts of time to playable, each alone: the storyboard's plan and cues, the master
from the finished rungs, the served storyboard's signed sprite, the checkpoint, the
progress figure and its ETA, the upload's own ETA, and the larger rungs' one run."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from clock_helpers import Clock
from media_helpers import make_audio, make_video

from processors.b2_files import by_reference
from processors.checkpoint import Checkpoint
from processors.content import looks_static
from processors.ffmpeg_run import run_ffmpeg
from processors.hls_master import write_master
from processors.media_tools import MediaTools
from processors.probe import probe
from processors.progress import SPEECH, JobStatus, Piece
from processors.storyboard import MAX_TILES, plan, vtt
from processors.transcode import (
    LADDER_PRESET,
    PLAYABLE_PRESET,
    STATIC_PRESET,
    audio_args,
    choose_ladder,
    first_preset,
    ladder_args,
    ladder_preset,
    rung_args,
    rung_dir,
)
from upload_service.core.playlists import rewrite_storyboard
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store.base import UploadInfo
from upload_service.core.upload_eta import UploadSpeeds


def test_storyboard_tiles_fall_on_segments_and_never_exceed_the_sheet() -> None:
    assert plan(12.0, 640, 360) == plan(12.0, 640, 360)
    short = plan(12.0, 640, 360)
    assert (short.interval, short.tiles, short.tile_width, short.tile_height) == (4, 3, 160, 90)
    lecture = plan(600.0, 1280, 720)
    assert lecture.interval == 8 and lecture.tiles == 75 and lecture.rows == 8
    for seconds in (1.0, 599.0, 4 * 3600.0):
        board = plan(seconds, 640, 360)
        assert board.interval % 4 == 0 and 1 <= board.tiles <= MAX_TILES
        assert board.tiles * board.interval >= seconds


def test_storyboard_cues_cover_the_media_with_one_tile_each() -> None:
    board = plan(50.0, 640, 360)
    text = vtt(board, 50.0)
    lines = text.splitlines()
    assert lines[0] == "WEBVTT"
    timings = [line for line in lines if "-->" in line]
    tiles = [line for line in lines if "#xywh=" in line]
    assert len(timings) == len(tiles) == 13
    assert timings[0] == "00:00:00.000 --> 00:00:04.000"
    assert timings[-1] == "00:00:48.000 --> 00:00:50.000"
    assert tiles[0] == "storyboard.jpg#xywh=0,0,160,90"
    assert tiles[9] == "storyboard.jpg#xywh=1440,0,160,90"
    assert tiles[10] == "storyboard.jpg#xywh=0,90,160,90"  # the second row


def test_served_storyboard_signs_the_sprite_and_keeps_the_fragment() -> None:
    body = vtt(plan(8.0, 640, 360), 8.0).encode()
    signed = rewrite_storyboard(body, lambda uri: f"{uri}?exp=1&sig=x").decode()
    assert "storyboard.jpg?exp=1&sig=x#xywh=0,0,160,90" in signed
    assert "storyboard.jpg?exp=1&sig=x#xywh=160,0,160,90" in signed
    assert signed.startswith("WEBVTT\n") and "00:00:00.000 --> 00:00:04.000\n" in signed
    assert signed.count("?exp=") == 2


def variant(
    hls: Path, index: int, height: int, segments: tuple[tuple[float, int], ...] = ((4.0, 1000),)
) -> None:
    """A rung as ffmpeg leaves it: its one-variant master, its media playlist and
    `segments` of (seconds, bytes)."""
    folder = hls / f"v{index}"
    folder.mkdir(parents=True)
    (folder / "variant.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:6\n"
        f"#EXT-X-STREAM-INF:BANDWIDTH={height * 1000},RESOLUTION={height * 16 // 9}x{height},"
        'CODECS="avc1.64001f,mp4a.40.2"\nindex.m3u8\n\n'
    )
    playlist = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:4"]
    for n, (seconds, size) in enumerate(segments):
        (folder / f"seg_{n:05d}.ts").write_bytes(b"\x47" * size)
        playlist += [f"#EXTINF:{seconds:.6f},", f"seg_{n:05d}.ts"]
    (folder / "index.m3u8").write_text("\n".join([*playlist, "#EXT-X-ENDLIST", ""]))


def test_master_bandwidths_are_what_the_segments_measure(tmp_path: Path) -> None:
    # ffmpeg's own figure leaves out a copied audio stream: the segments do not.
    hls = tmp_path / "hls"
    variant(hls, 2, 360, segments=((4.0, 1000), (2.0, 3000)))
    write_master(hls, [2])
    [stream_inf] = [
        line for line in (hls / "master.m3u8").read_text().splitlines() if "STREAM-INF" in line
    ]
    assert stream_inf == (
        "#EXT-X-STREAM-INF:BANDWIDTH=12000,AVERAGE-BANDWIDTH=5334,"
        'RESOLUTION=640x360,CODECS="avc1.64001f,mp4a.40.2"'
    )


def test_master_lists_the_finished_rungs_best_first_and_is_replaced_whole(tmp_path: Path) -> None:
    hls = tmp_path / "hls"
    variant(hls, 2, 360)
    write_master(hls, [2])
    first = (hls / "master.m3u8").read_text()
    assert first.startswith("#EXTM3U\n") and first.count("#EXT-X-STREAM-INF") == 1
    assert first.rstrip().endswith("v2/index.m3u8")
    variant(hls, 0, 720)
    variant(hls, 1, 480)
    write_master(hls, [2, 0, 1])
    uris = [line for line in (hls / "master.m3u8").read_text().splitlines() if line[:1] == "v"]
    assert uris == ["v0/index.m3u8", "v1/index.m3u8", "v2/index.m3u8"]
    assert sorted(p.name for p in hls.iterdir() if p.is_file()) == ["master.m3u8"]


def test_checkpoint_survives_a_new_attempt_and_counts_runs(tmp_path: Path) -> None:
    first = Checkpoint(tmp_path)
    assert not first.resumed
    first.started("rung2")
    first.finish("rung2")
    first.started("rung1")  # killed while making it
    again = Checkpoint(tmp_path)
    assert again.resumed and again.done("rung2") and not again.done("rung1")
    again.started("rung1")
    assert (again.runs("rung2"), again.runs("rung1")) == (1, 2)
    (tmp_path / "manifest.json").write_text("{half a fi")
    assert not Checkpoint(tmp_path).resumed  # unreadable: the job starts over


def status_for(tmp_path: Path) -> StatusStore:
    store = StatusStore(tmp_path / "status", None)
    store.put(new_record(UploadInfo("up1", "u", 10, 10, {})))
    return store


def test_progress_is_the_whole_job_and_the_eta_comes_from_measured_speed(tmp_path: Path) -> None:
    clock = Clock()
    job = JobStatus(status_for(tmp_path), "up1", interval=0.0, clock=clock)
    job.plan([Piece("rung1", "transcode", 30.0), Piece("rung0", "transcode", 70.0)])
    report = job.piece("rung1")
    clock.now = 10.0
    report(50.0)  # 15 prior seconds done in 10 s: this machine is 1.5x the prior's speed
    snap = job.snapshot()
    assert snap["percent"] == 15.0 and snap["stage"] == "transcode"
    assert snap["eta_s"] == round(85 * 10 / 15)
    clock.now = 20.0
    report(100.0)
    later = job.snapshot()
    assert later["percent"] == 30.0 and later["eta_s"] < snap["eta_s"]
    record = job.write(state="playable")
    assert record["state"] == "playable" and record["progress"]["eta_s"] == later["eta_s"]


def test_the_eta_is_the_slowest_lane_and_skipped_pieces_cost_nothing(tmp_path: Path) -> None:
    clock = Clock()
    job = JobStatus(status_for(tmp_path), "up1", interval=0.0, clock=clock)
    job.plan(
        [
            Piece("rung1", "transcode", 10.0),
            Piece("rung0", "transcode", 10.0),
            Piece("transcript", "transcribe", 40.0, lane=SPEECH),
        ]
    )
    job.skip("rung1")  # made by an earlier attempt
    encode, speech = job.piece("rung0"), job.piece("transcript")
    clock.now = 5.0
    encode(50.0)
    speech(10.0)
    # The encoder has 5 s left at its speed, the transcript 45 s at its own.
    assert job.snapshot()["eta_s"] == 45
    assert job.snapshot()["percent"] == round(100 * (10 + 5 + 4) / 60, 1)
    job.finish_lane(SPEECH)
    assert job.snapshot()["eta_s"] == 5


def test_upload_eta_from_the_upload_speed() -> None:
    clock = Clock()
    speeds = UploadSpeeds(clock)
    assert speeds.progress("a", 0, 1000) == {"stage": "upload", "percent": 0.0, "eta_s": None}
    clock.now = 2.0
    assert speeds.progress("a", 250, 1000) == {"stage": "upload", "percent": 25.0, "eta_s": 6}
    assert speeds.progress("b", 10, None)["eta_s"] is None  # a deferred length
    speeds.forget("a")
    assert speeds.progress("a", 500, 1000)["eta_s"] is None


def test_b2_publishes_what_is_named_before_what_names_it(tmp_path: Path) -> None:
    names = ["hls/master.m3u8", "storyboard.vtt", "hls/v2/seg_00000.ts", "hls/v2/index.m3u8"]
    items = [(tmp_path / n, n) for n in names] + [(tmp_path / "storyboard.jpg", "storyboard.jpg")]
    groups = [[name for _, name in group] for group in by_reference(items)]
    assert groups == [
        ["hls/v2/seg_00000.ts", "storyboard.jpg"],
        ["storyboard.vtt"],
        ["hls/master.m3u8", "hls/v2/index.m3u8"],
    ]
    assert json.loads(json.dumps(groups))  # plain names, nothing else


def test_slides_are_static_and_encoded_at_a_lower_rate_a_test_pattern_is_not(
    tmp_path: Path,
) -> None:
    slides = tmp_path / "slides.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=navy:s=640x360:r=30:d=6",
         "-f", "lavfi", "-i", "color=c=teal:s=640x360:r=30:d=6", "-filter_complex",
         "[0:v]drawbox=x=40:y=40:w=200:h=100:color=orange:t=fill[a];[a][1:v]concat=n=2[v]",
         "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         str(slides)],
        check=True,
    )  # fmt: skip
    pattern = make_video(tmp_path / "pattern.mp4", 4)
    found = {}
    for clip in (slides, pattern):
        tools = MediaTools(clip.resolve(), tmp_path)
        found[clip.name] = looks_static(tools, probe(clip, None, tools))
    assert found == {"slides.mp4": True, "pattern.mp4": False}

    tools = MediaTools(slides.resolve(), tmp_path)
    info = replace(probe(slides, None, tools), static=True)
    args = " ".join(rung_args(tools, tmp_path, info, 0, choose_ladder(640, 360)[0], 30.0))
    assert "fps=fps=10" in args and "-tune stillimage" in args
    assert "-skip_frame" not in args  # every frame decoded: the fps filter picks from all


def _probe_stream(path: Path, kind: str, entries: str) -> str:
    """The first stream's `entries` (an MPEG-TS lists its streams again under its program)."""
    return subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", kind, "-show_entries", entries,
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.split()[0]  # fmt: skip


def test_larger_rungs_come_from_one_decode_aligned_with_the_first_and_mono_stays_mono(
    tmp_path: Path,
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=9, size="1280x720")  # a mono tone
    work = tmp_path / "work"
    work.mkdir()
    tools = MediaTools(clip.resolve(), work)
    info = probe(clip, None, tools)
    assert info.audio_channels == 1
    ladder = choose_ladder(1280, 720)
    for index in range(3):
        (work / rung_dir(index)).mkdir(parents=True)
    first = rung_args(tools, work, info, 2, ladder[2], 30.0, PLAYABLE_PRESET)
    run_ffmpeg(first, tools=tools, duration=9.0, timeout=120, log_path=work / "log")
    playlist = work / rung_dir(2) / "index.m3u8"
    args = ladder_args(tools, work, info, {0: ladder[0], 1: ladder[1]}, 30.0, "veryfast", playlist)
    # The upload is read once for both rungs; the audio comes from the first rung.
    assert " ".join(args).count(f"file:{clip.resolve()}") == 1 and "split=2" in " ".join(args)
    assert args.count("copy") == 2
    run_ffmpeg(args, tools=tools, duration=9.0, timeout=120, log_path=work / "log")

    segments = set()
    for index, rung in enumerate(ladder):
        folder = work / rung_dir(index)
        segments.add(tuple(re.findall(r"#EXTINF:([\d.]+)", (folder / "index.m3u8").read_text())))
        first_segment = folder / "seg_00000.ts"
        size = _probe_stream(first_segment, "v", "stream=width,height")
        assert size == f"{rung.width},{rung.height}"
        assert _probe_stream(first_segment, "a", "stream=channels") == "1"
        assert (folder / "variant.m3u8").is_file()
    assert len(segments) == 1  # the same segment boundaries in both runs

    # Slides: every rung at x264's quickest preset; moving pictures not.
    slides = replace(info, static=True)
    assert first_preset(slides) == ladder_preset(slides) == STATIC_PRESET
    assert (first_preset(info), ladder_preset(info)) == (PLAYABLE_PRESET, LADDER_PRESET)


@pytest.mark.parametrize("channels", [1, 2])
def test_audio_keeps_mono_mono_and_stereo_stereo(tmp_path: Path, channels: int) -> None:
    source = make_audio(tmp_path / "mono.m4a", seconds=3)
    if channels == 2:
        stereo = tmp_path / "stereo.m4a"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(source), "-ac", "2", str(stereo)], check=True
        )
        source = stereo
    work = tmp_path / "work"
    (work / "hls").mkdir(parents=True)
    tools = MediaTools(source.resolve(), work)
    info = probe(source, None, tools)
    assert info.audio_channels == channels
    run_ffmpeg(
        audio_args(tools, work, info), tools=tools, duration=3.0, timeout=60, log_path=work / "log"
    )
    assert _probe_stream(work / "audio.m4a", "a", "stream=channels") == str(channels)
    assert _probe_stream(work / "hls/v0/seg_00000.ts", "a", "stream=channels") == str(channels)
