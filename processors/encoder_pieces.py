"""The pieces the encoder makes, one after another: the ladder's two runs, the
poster, the storyboard, the MP4; or, for audio, its one piece.

The smallest rung is one ffmpeg run, so that it plays as soon as it can; the
other rungs are one more run, from a second decode of the upload, its picture
split to one encoder per rung (on slides, decoding costs more than encoding
a rung: one decode a rung would be most of the ladder's CPU). They are
checkpointed together: a worker killed during that run makes them all again
(a rung the checkpoint already lists is left out of it). Segments line up
across runs because every run forces keyframes at the same instants.
"""

from __future__ import annotations

import shutil

from . import storyboard
from .ffmpeg_run import run_ffmpeg
from .hls_master import write_master
from .job_parts import JobParts, checkpointed, piece_ffmpeg
from .piece_publishing import announce_playable, publish_piece, published_files, write_outputs
from .transcode import (
    AUDIO_BITRATE,
    MASTER,
    Deadline,
    Rendition,
    audio_args,
    first_preset,
    ladder_args,
    ladder_preset,
    make_poster,
    mp4_args,
    rung_dir,
)


def encode_rungs(
    job: JobParts, ladder: list[Rendition], indexes: list[int], deadline: Deadline, preset: str
) -> None:
    """The rungs `indexes` in one ffmpeg run (those the checkpoint lacks), checkpointed
    together once it has finished."""
    todo = [i for i in indexes if not job.checkpoint.done(f"rung{i}")]
    low = len(ladder) - 1
    if todo:
        # The first rung's AAC serves the others (copied, not encoded again).
        audio = job.out / rung_dir(low) / "index.m3u8" if low not in todo else None
        for index in todo:
            job.checkpoint.started(f"rung{index}")
            folder = job.out / rung_dir(index)
            shutil.rmtree(folder, ignore_errors=True)  # what a killed run left of it
            folder.mkdir(parents=True)
        reports = [job.status.piece(f"rung{index}") for index in todo]

        def progress(percent: float) -> None:
            for report in reports:
                report(percent)

        rungs = {index: ladder[index] for index in todo}
        args = ladder_args(
            job.tools, job.out, job.media, rungs, job.tools.limits.max_fps, preset, audio
        )
        run_ffmpeg(
            args,
            tools=job.tools,
            duration=job.media.duration,
            timeout=deadline.left(),
            log_path=job.log_path,
            on_progress=progress,
        )
        for index in todo:
            job.checkpoint.finish(f"rung{index}", None)
    for index in indexes:
        job.made.rungs[index] = (ladder[index], f"{rung_dir(index)}/index.m3u8")


def first_rung(job: JobParts, ladder: list[Rendition], deadline: Deadline) -> None:
    """The smallest rung and the poster, published with a master of that rung alone:
    the upload is playable."""
    low = len(ladder) - 1
    encode_rungs(job, ladder, [low], deadline, first_preset(job.media))

    def poster() -> str | None:
        job.status.piece("poster")
        return make_poster(job.tools, job.out, job.media, ladder[0], deadline, job.log_path)

    job.made.poster = checkpointed(job, "poster", poster) or None
    write_master(job.out / "hls", sorted(job.made.rungs))
    names = [*([job.made.poster] if job.made.poster else []), *published_files(job, rung_dir(low))]
    publish_piece(job, "first", names + [MASTER])
    announce_playable(job)


def audio_piece(job: JobParts, deadline: Deadline) -> None:
    """Audio only: the m4a and an audio HLS in one run, published: the upload is playable."""

    def make() -> None:
        shutil.rmtree(job.out / "hls", ignore_errors=True)
        (job.out / "hls").mkdir(parents=True)
        piece_ffmpeg(job, audio_args(job.tools, job.out, job.media), deadline, "audio")

    checkpointed(job, "audio", make)
    job.made.rungs[0] = (Rendition(0, 0, 0, AUDIO_BITRATE), "hls/v0/index.m3u8")
    job.made.download = "audio.m4a"
    names = ["audio.m4a", *published_files(job, "hls/v0")]
    publish_piece(job, "audio", names + [MASTER])
    announce_playable(job)


def storyboard_piece(job: JobParts, ladder: list[Rendition], deadline: Deadline) -> None:
    """The storyboard, from the smallest rung, published as soon as it exists."""
    low = len(ladder) - 1
    rung = ladder[low]
    duration = job.media.duration or 0.0
    if duration <= 0:
        return
    board = storyboard.plan(duration, rung.width, rung.height)

    def make() -> bool:
        playlist = job.out / rung_dir(low) / "index.m3u8"
        job.status.piece("storyboard")
        piece_ffmpeg(job, storyboard.sprite_args(playlist, job.out, board), deadline, None)
        if not (job.out / storyboard.SPRITE).is_file():
            return False
        (job.out / storyboard.VTT).write_text(storyboard.vtt(board, duration))
        return True

    if checkpointed(job, "storyboard", make):
        publish_piece(job, "storyboard", [storyboard.SPRITE, storyboard.VTT])
        job.made.storyboard = storyboard.VTT
        write_outputs(job)


def larger_rungs(job: JobParts, ladder: list[Rendition], deadline: Deadline) -> None:
    """Every rung but the smallest, from one decode; then each published, smallest
    first, and added to the master."""
    indexes = list(reversed(range(len(ladder) - 1)))
    if not indexes:
        return
    encode_rungs(job, ladder, indexes, deadline, ladder_preset(job.media))
    for index in indexes:
        write_master(job.out / "hls", sorted(i for i in job.made.rungs if i >= index))
        publish_piece(job, f"rung{index}", [*published_files(job, rung_dir(index)), MASTER])
    write_outputs(job)


def mp4_piece(job: JobParts, deadline: Deadline) -> None:
    """The MP4 download: the top rung remuxed."""

    def make() -> None:
        job.status.piece("mp4")
        (job.out / "video.mp4").unlink(missing_ok=True)
        piece_ffmpeg(job, mp4_args(job.out), deadline, None)

    checkpointed(job, "mp4", make)
    job.made.download = "video.mp4"
    publish_piece(job, "mp4", ["video.mp4"])
