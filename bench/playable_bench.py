"""`python -m bench.playable_bench [--media lecture clip] [--repeats N]`: time to playable.

For each piece of media, side by side in one run:
- **through the worker**: a real `upload-service worker` (transcription on) gets the
  `process_upload` message the server sends on an upload's last byte; measured from
  that message to `playable` and to `ready` in the status record, and the worker's CPU
  seconds (its own and its ffmpeg children's) per minute of media;
- **bare**: the very same ffmpeg commands the pipeline runs for it (`bare_commands`:
  probe, the smallest rung, the poster, then the storyboard, the other rungs in one run,
  the MP4),
  one after another without the sandbox or the progress pipe, timed to the end of the
  poster (what playable needs) and to the end of the last one (ready, without captions).

Media, generated once and cached (`--cache`): a 10-minute 1280x720 30 fps lecture (a
still slide a minute, drawn with ffmpeg's lavfi, and espeak-ng speech) and a 60 s
1920x1080 30 fps test pattern with a tone. Goal for the lecture on a 2-core machine:
playable within 0.05x of its duration (30 s) and ready within 0.2x (120 s).

The machine is shared: each row says the load average when it started.
Writes bench/results/playable.md and playable.json, and rewrites docs/performance.md
from bench/method.md, the main bench's latest figures and this table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from redis import Redis

from processors.content import looks_static
from processors.ffmpeg_run import BASE_ARGS
from processors.media_tools import MediaTools
from processors.probe import DECODE_SECONDS, describe, ffprobe
from processors.storyboard import plan, sprite_args
from processors.transcode import (
    choose_ladder,
    first_preset,
    ladder_args,
    ladder_preset,
    mp4_args,
    poster_args,
    poster_seconds,
    rung_args,
    rung_dir,
)
from upload_service.core.jobs import DramatiqJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore

from . import machine, procs, report
from .pipeline_bench import new_upload

RESULTS = procs.BENCH_DIR / "results"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SLIDE_COLOURS = ("0x1d3557", "0x264653", "0x2a9d8f", "0x6d597a", "0x355070")
NARRATION = (
    "Slide number {n}. In this part of the lecture we look at the structure of the problem "
    "and how each piece fits with the others. First we define the terms. Then we work "
    "through an example step by step, and finally we summarise what we have learned so that "
    "the next slide can build on it. Remember that practice matters more than reading. Take "
    "notes, ask questions, and try the exercises at the end of the chapter before the next "
    "session."
)


# -- media ---------------------------------------------------------------------------------


def make_lecture(path: Path, minutes: int = 10) -> Path:
    """Still slides changing every minute, each with about half a minute of speech."""
    work = path.parent / "lecture-parts"
    work.mkdir(parents=True, exist_ok=True)
    inputs: list[str] = []
    graph: list[str] = []
    for i in range(minutes):
        colour = SLIDE_COLOURS[i % len(SLIDE_COLOURS)]
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s=1280x720:r=30:d=60"]
    for i in range(minutes):
        speech = work / f"s{i}.wav"
        text = NARRATION.format(n=i)
        subprocess.run(["espeak-ng", "-v", "en-us+f2", "-s", "150", "-w", str(speech), text])
        inputs += ["-i", str(speech)]
    for i in range(minutes):
        graph.append(
            f"[{i}:v]drawtext=fontfile={FONT}:text='Slide {i + 1}':fontsize=72:fontcolor=white"
            f":x=100:y=100,drawtext=fontfile={FONT}:text='Lecture notes for part {i + 1}'"
            f":fontsize=40:fontcolor=white:x=100:y=260,drawbox=x=100:y=360:w={200 + 80 * i}"
            f":h=200:color=orange@0.8:t=fill[v{i}]"
        )
        graph.append(f"[{minutes + i}:a]aresample=44100,apad=whole_dur=60[a{i}]")
    graph.append(
        "".join(f"[v{i}][a{i}]" for i in range(minutes)) + f"concat=n={minutes}:v=1:a=1[v][a]"
    )
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", ";".join(graph)]
        + ["-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast"]
        + ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path)],
        check=True,
    )
    shutil.rmtree(work, ignore_errors=True)
    return path


def make_clip(path: Path, seconds: int = 60, size: str = "1920x1080") -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i"]
        + [f"testsrc=duration={seconds}:size={size}:rate=30", "-f", "lavfi", "-i"]
        + [f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "veryfast"]
        + ["-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True,
    )
    return path


MEDIA: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "lecture": ("10 min 1280x720 lecture (slides + speech)", make_lecture),
    "clip": ("60 s 1920x1080 test pattern + tone", make_clip),
}


def cached(cache: Path, name: str) -> Path:
    path = cache / f"{name}-v1.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"making the {name} (once; cached in {cache})", file=sys.stderr)
        MEDIA[name][1](path.with_suffix(".tmp.mp4"))
        path.with_suffix(".tmp.mp4").rename(path)
    return path


# -- the bare reference ----------------------------------------------------------------------


def bare_commands(source: Path, out: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(up to playable, the rest): the pipeline's ffmpeg/ffprobe commands for `source`,
    without the progress pipe and the sandbox (bubblewrap and rlimits)."""
    tools = MediaTools(source.resolve(), out.resolve())
    data = ffprobe(tools)
    assert data is not None
    info = describe(data)
    assert info is not None and info.width and info.height and info.duration
    # The pipeline's decision too: slides are encoded as slides (its packet scan, a
    # demux of the first minute, is left out of the bare time).
    info = replace(info, static=looks_static(tools, info))
    assert info.width and info.height and info.duration
    decode = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error"]
    tail = ["-t", str(DECODE_SECONDS), "-f", "null", "-"]
    ladder = choose_ladder(info.width, info.height, info.has_audio)
    fps = tools.limits.max_fps
    low = len(ladder) - 1
    first = [
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", *tools.input()],
        [*decode, *tools.input(), *tail],
        [*decode, "-sseof", f"-{DECODE_SECONDS}", *tools.input(), *tail],
        [*BASE_ARGS, *rung_args(tools, out, info, low, ladder[low], fps, first_preset(info))],
        [*BASE_ARGS, *poster_args(tools, out, info, ladder[0], poster_seconds(info))],
    ]
    board = plan(info.duration, ladder[low].width, ladder[low].height)
    first_rung = out / rung_dir(low) / "index.m3u8"
    rest = [[*BASE_ARGS, *sprite_args(first_rung, out, board)]]
    if low:  # the larger rungs: one run, the first rung's AAC copied
        larger = {index: ladder[index] for index in range(low)}
        preset = ladder_preset(info)
        rest.append([*BASE_ARGS, *ladder_args(tools, out, info, larger, fps, preset, first_rung)])
    rest.append([*BASE_ARGS, *mp4_args(out)])
    return first, rest


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def run_bare(source: Path, work: Path) -> tuple[float, float, float]:
    """(seconds to playable, seconds to the end, CPU seconds)."""
    out = work / "bare"
    shutil.rmtree(out, ignore_errors=True)
    for folder in ("hls/v0", "hls/v1", "hls/v2", "hls/v3"):
        (out / folder).mkdir(parents=True)
    cpu, started = children_cpu(), time.perf_counter()
    first, rest = bare_commands(source, out)
    for command in first:
        subprocess.run(command, check=True, capture_output=True)
    playable = time.perf_counter() - started
    for command in rest:
        subprocess.run(command, check=True, capture_output=True)
    return playable, time.perf_counter() - started, children_cpu() - cpu


# -- through the worker ----------------------------------------------------------------------


def worker_proc(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        "UPLOAD_DATA_DIR": str(settings.data_dir),
        "REDIS_URL": settings.redis_url,
        "TRANSCRIBE": "true",
        "LOG_JSON": "false",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "upload_service.cli",
            "worker",
            "--processes",
            "1",
            "--threads",
            "1",
        ],
        env=env,
        cwd=procs.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants: the worker's own, its Dramatiq
    worker processes', their running ffmpeg's and (through the kernel's children
    accounting) every ffmpeg they already waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    own = sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime..cstime
    return own + sum(tree_cpu(child) for child in procs.children_of(pid))


def run_worker(
    settings: Settings, status: StatusStore, worker_pid: int, source: Path, n: int
) -> tuple[float, float, float]:
    """(seconds from the message to playable, to ready, the worker's CPU seconds)."""
    upload_id = new_upload(settings, status, source, n)
    assert status.redis is not None
    jobs = DramatiqJobQueue.on_redis(status.redis)
    path = settings.status_dir / f"{upload_id}.json"
    cpu = tree_cpu(worker_pid)
    started = time.perf_counter()
    jobs.send("process_upload", upload_id)
    playable: float | None = None
    while True:
        text = path.read_text()
        if playable is None and ('"state":"playable"' in text or '"state":"ready"' in text):
            playable = time.perf_counter() - started
        if '"state":"ready"' in text:
            break
        assert '"state":"failed"' not in text, text
        time.sleep(0.02)
    assert playable is not None
    return playable, time.perf_counter() - started, tree_cpu(worker_pid) - cpu


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Row:
    media: str
    what: str
    playable_s: float
    ready_s: float
    cpu_s_per_media_min: float
    load_at_start: float


def measure(names: list[str], repeats: int, cache: Path, tmp: Path) -> list[Row]:
    rows: list[Row] = []
    with procs.running(procs.redis_proc(tmp)) as redis:
        settings = Settings(data_dir=tmp / "data", redis_url=f"redis://127.0.0.1:{redis.port}/0")
        status = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
        worker = worker_proc(settings)
        try:
            time.sleep(5)  # boot; the speech model loads with the first job
            for name in names:
                source = cached(cache, name)
                data = ffprobe(MediaTools(source.resolve()))
                assert data is not None
                minutes = float(data["format"]["duration"]) / 60
                label = MEDIA[name][0]
                for _ in range(repeats):
                    load = os.getloadavg()[0]
                    p, r, c = run_bare(source, tmp)
                    rows.append(Row(label, "same ffmpeg commands, bare", p, r, c / minutes, load))
                    print(rows[-1], file=sys.stderr)
                    load = os.getloadavg()[0]
                    p, r, c = run_worker(settings, status, worker.pid, source, len(rows))
                    rows.append(Row(label, "upload-service worker", p, r, c / minutes, load))
                    print(rows[-1], file=sys.stderr)
        finally:
            worker.terminate()
            worker.wait(30)
    return rows


def table(rows: list[Row], info: dict[str, object], command: str) -> str:
    lines = [
        f"`{command}` on {info['date']}: {info['cpu']}, {info['cores']} cores, load average "
        f"{info['load_average_at_start']:.1f} at the start and {os.getloadavg()[0]:.1f} at "
        "the end (the machine is shared: each row gives its own).",
        "",
        "Through the worker: from the `process_upload` message (sent on the last byte) to "
        "`playable` and to `ready`, transcription included. Bare: the same ffmpeg commands "
        "one after another, to the poster (playable) and to the MP4 (ready, no captions).",
        "",
        "| media | what | to playable, s | to ready, s | CPU s per media minute | load at start |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.media} | {row.what} | {row.playable_s:.1f} | {row.ready_s:.1f} "
            f"| {row.cpu_s_per_media_min:.1f} | {row.load_at_start:.1f} |"
        )
    lines += [
        "",
        "Goal for the lecture on a 2-core machine: playable within 30 s (0.05x its "
        "duration) and ready within 120 s (0.2x).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.playable_bench", description=__doc__)
    parser.add_argument("--media", nargs="+", choices=MEDIA, default=list(MEDIA))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "upload-bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    info = machine.describe()
    tmp = Path(tempfile.mkdtemp(prefix="playable-bench-"))
    try:
        rows = measure(args.media, args.repeats, args.cache, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    command = " ".join(["python -m bench.playable_bench", *argv])
    text = table(rows, info, command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "playable.md").write_text("# Time to playable\n\n" + text)
    payload = {"machine": info, "command": command, "rows": [asdict(r) for r in rows]}
    (args.out / "playable.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)
    if args.out.resolve() == RESULTS.resolve():
        print(f"wrote {report.rewrite_docs()}")


if __name__ == "__main__":
    main()
