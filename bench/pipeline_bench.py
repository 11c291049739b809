"""`python -m bench.pipeline_bench [--seconds S] [--size WxH] [--repeats N]`

Two side-by-side measurements on this machine, figures as ratios:

1. Processing: the pipeline's wall time (probe, transcode, publish, status
   writes; in-process, and through a real `upload-service worker` from message
   to `ready`) against the very same ffmpeg/ffprobe commands run bare, one
   after another, on the same clip. Target: within 1.15x.
2. Status polling: GET /v1/uploads/{id} of a `ready` record at 50 concurrent
   keep-alive pollers against a bare Starlette JSON endpoint run the same way
   (uvicorn, no access log). Target: at least 0.6x.

Starts its own Redis, server and worker in a temp dir and removes them all.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis

from processors.pipeline import PipelineContext, process_upload
from processors.publish import make_publisher
from upload_service.core.jobs import DramatiqJobQueue, MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store.base import UploadInfo

from . import load, procs


def make_clip(path: Path, seconds: float, size: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i"]
        + [f"testsrc=duration={seconds}:size={size}:rate=30", "-f", "lavfi", "-i"]
        + [f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "veryfast"]
        + ["-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True,
    )
    return path


def bare_commands(source: Path, out_dir: Path) -> list[list[str]]:
    """Exactly the commands the pipeline runs for a video, minus the progress pipe
    and the sandbox (bubblewrap and rlimits): what containment costs shows."""
    from .playable_bench import bare_commands as in_two_parts

    first, rest = in_two_parts(source, out_dir)
    return first + rest


def cpu_seconds() -> float:
    """CPU used so far by this process and its finished children (ffmpeg)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


Timing = tuple[float, float]  # (wall seconds, CPU seconds)


def run_bare(source: Path, work: Path) -> Timing:
    out = work / "bare"
    shutil.rmtree(out, ignore_errors=True)
    for rung in range(4):
        (out / f"hls/v{rung}").mkdir(parents=True)
    cpu, started = cpu_seconds(), time.perf_counter()
    for command in bare_commands(source, out):
        subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started, cpu_seconds() - cpu


def new_upload(settings: Settings, status: StatusStore, source: Path, n: int) -> str:
    upload_id = f"bench{n:04d}"
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    target = settings.uploads_dir / upload_id
    shutil.copyfile(source, target)
    size = target.stat().st_size
    info = UploadInfo(upload_id, "bench", size, size, {"filename": "clip.mp4"})
    (settings.uploads_dir / f"{upload_id}.info").write_text(json.dumps(info.to_json()))
    status.put(new_record(info))
    return upload_id


def run_pipeline(ctx: PipelineContext, source: Path, n: int) -> Timing:
    upload_id = new_upload(ctx.settings, ctx.status, source, n)
    cpu, started = cpu_seconds(), time.perf_counter()
    record = process_upload(upload_id, ctx)
    timing = time.perf_counter() - started, cpu_seconds() - cpu
    assert record is not None and record["state"] == "ready", record
    return timing


def run_through_worker(settings: Settings, status: StatusStore, source: Path, n: int) -> float:
    upload_id = new_upload(settings, status, source, n)
    assert status.redis is not None
    jobs = DramatiqJobQueue.on_redis(status.redis)
    started = time.perf_counter()
    jobs.send("process_upload", upload_id)
    path = settings.status_dir / f"{upload_id}.json"
    while '"state":"ready"' not in path.read_text():
        time.sleep(0.02)
    return time.perf_counter() - started


def worker_proc(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        "UPLOAD_DATA_DIR": str(settings.data_dir),
        "REDIS_URL": settings.redis_url,
        "TRANSCRIBE": "false",
        "LOG_JSON": "false",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "upload_service.cli", "worker", "--threads", "1"],
        env=env,
        cwd=procs.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def processing(tmp: Path, redis_port: int, seconds: float, size: str, repeats: int) -> None:
    settings = Settings(
        data_dir=tmp / "data", redis_url=f"redis://127.0.0.1:{redis_port}/0", transcribe=False
    )
    clip = make_clip(tmp / "clip.mp4", seconds, size)
    status = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    ctx = PipelineContext(settings, status, MemoryJobQueue(), make_publisher(settings))
    # Interleaved, so that a noisy neighbour hits both sides alike.
    bare, pipe = [], []
    run_bare(clip, tmp)  # warm the page cache and ffmpeg's libraries
    for i in range(repeats):
        bare.append(run_bare(clip, tmp))
        pipe.append(run_pipeline(ctx, clip, i))
    b, p = statistics.median(t[0] for t in bare), statistics.median(t[0] for t in pipe)
    bc, pc = statistics.median(t[1] for t in bare), statistics.median(t[1] for t in pipe)
    print(f"\n## Processing a {seconds:g} s {size} clip (median of {repeats})\n")
    print("| what | wall s | vs bare | CPU s | vs bare |\n| --- | --- | --- | --- | --- |")
    print(f"| same ffmpeg/ffprobe commands, bare | {b:.2f} | 1.00x | {bc:.2f} | 1.00x |")
    print(
        f"| pipeline in-process (probe, transcode, publish, status) | {p:.2f} | {p / b:.2f}x "
        f"| {pc:.2f} | {pc / bc:.2f}x |"
    )
    worker = worker_proc(settings)
    try:
        time.sleep(3)  # boot
        via = [run_through_worker(settings, status, clip, 100 + i) for i in range(repeats)]
    finally:
        worker.terminate()
        worker.wait(30)
    w = statistics.median(via)
    print(f"| via `upload-service worker`, message sent -> ready | {w:.2f} | {w / b:.2f}x | | |")
    print(f"\nruns (s): bare {bare}, pipeline {pipe}, worker {via}")


def polling(tmp: Path, redis_port: int, pollers: int, seconds: float) -> None:
    data_dir = tmp / "poll-data"
    with procs.running(procs.service_proc(data_dir, redis_port)) as ours:
        from bench import client

        with client.Connection(ours.port) as conn:
            path = client.create(conn, "/files/", client.make_token(), 1048576)
        upload_id = path.rsplit("/", 1)[1]
        status = StatusStore(data_dir / "status", Redis.from_url(f"redis://127.0.0.1:{redis_port}"))
        base = f"/media/{upload_id}/"
        status.update(
            upload_id,
            state="ready",
            media={"kind": "video", "duration": 61.4, "width": 1280, "height": 720},
            outputs={
                "original": f"/files/{upload_id}",
                "hls": base + "hls/master.m3u8",
                "poster": base + "poster.jpg",
                "mp4": base + "video.mp4",
                "renditions": [
                    {"height": h, "width": w, "bitrate": b, "url": f"{base}hls/v{i}/index.m3u8"}
                    for i, (w, h, b) in enumerate(
                        [(1280, 720, 2928000), (854, 480, 1528000), (640, 360, 928000)]
                    )
                ],
            },
        )
        headers = {"Authorization": f"Bearer {procs.API_KEY}"}
        target = f"/v1/uploads/{upload_id}"
        mine = load.poll(ours.port, target, headers, pollers, seconds)
    with procs.running(procs.bare_starlette_proc()) as bare:
        ref = load.poll(bare.port, "/v1/uploads/x", {}, pollers, seconds)
    ratio = mine.rps / ref.rps
    print(f"\n## Status polling, {pollers} concurrent keep-alive pollers, {seconds:g} s\n")
    print("| endpoint | req/s | p50 ms | p99 ms | errors |\n| --- | --- | --- | --- | --- |")
    for name, r in (("GET /v1/uploads/{id} (ready record)", mine), ("bare Starlette JSON", ref)):
        p50, p99 = load.percentile(r.latencies_ms, 50), load.percentile(r.latencies_ms, 99)
        print(f"| {name} | {r.rps:.0f} | {p50:.1f} | {p99:.1f} | {r.errors} |")
    print(f"\nratio: {ratio:.2f}x of the bare endpoint (target >= 0.6x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--poll-seconds", type=float, default=8.0)
    parser.add_argument("--only", choices=("processing", "polling"))
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        with procs.running(procs.redis_proc(tmp)) as redis:
            if args.only in (None, "processing"):
                processing(tmp, redis.port, args.seconds, args.size, args.repeats)
            if args.only in (None, "polling"):
                polling(tmp, redis.port, args.pollers, args.poll_seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
