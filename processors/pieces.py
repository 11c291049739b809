"""The job in pieces: playable soon, complete later, resumable after a crash.

For a video, in this order:
1. the smallest rung, at the quickest preset, and the poster; published with a
   master playlist that lists that rung alone: the upload is `playable`
   (`media.playable`), and the transcript starts beside the encoder;
2. the storyboard (from that rung), published as soon as it exists;
3. the other rungs, smallest to largest, each published and added to the master
   when it is finished (the master is replaced whole: always valid);
4. the MP4 download (the top rung remuxed);
5. the captions, when the transcript is done, joining the master;
then `ready` (`media.ready`), once.

Audio is one piece (the m4a and an audio HLS), then the captions.

Every piece is checkpointed (`Checkpoint`) once made and once published: a
redelivered job skips both, so a worker SIGKILLed in the middle of the ladder
goes on from the rung it was making, and ends with the same outputs.

The smallest rung is one ffmpeg run, so that it plays as soon as it can; the
other rungs are one more run, from a second decode of the upload, its picture
split to one encoder per rung (on slides, decoding costs more than encoding
a rung: one decode a rung would be most of the ladder's CPU). They are
checkpointed together: a worker killed during that run makes them all again
(a rung the checkpoint already lists is left out of it). Segments line up
across runs because every run forces keyframes at the same instants.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from upload_service.core.logs import log_event
from upload_service.core.status import Record, UploadEnded

from . import storyboard
from .checkpoint import Checkpoint
from .content import STATIC_FPS
from .ffmpeg_run import run_ffmpeg
from .hls_master import write_master
from .hls_subtitles import add_subtitles_vtt
from .media_tools import MediaTools
from .outputs import Made, build_outputs
from .probe import MediaInfo
from .progress import SPEECH, JobStatus, Piece
from .publish import Publisher
from .transcode import (
    AUDIO_BITRATE,
    MASTER,
    VARIANT,
    Deadline,
    Rendition,
    audio_args,
    choose_ladder,
    first_preset,
    ladder_args,
    ladder_preset,
    make_poster,
    mp4_args,
    rung_dir,
)
from .transcribe import TranscriptionResult

log = logging.getLogger("processors.pieces")

# Prior cost of each piece, in seconds per second of media at 1280x720 and
# 30 fps on one core of a small machine; only the start of an estimate (see
# `progress`): each lane's measured speed replaces it as soon as it has one.
ENCODE_COST_720P = 0.12
DECODE_COST = 0.04
SPEECH_COST = 0.15
SMALL_COST = 0.005
FULL_FRAME = 1280 * 720


@dataclass
class JobParts:
    """What a job's pieces need of the pipeline: its settings, tools and places."""

    upload_id: str
    tools: MediaTools
    media: MediaInfo
    work: Path
    publisher: Publisher
    status: JobStatus
    checkpoint: Checkpoint
    timeout: float
    original_url: str
    # Starts the transcript (returns None when there is none to make).
    transcribe: Callable[[Path, Callable[[float], None]], TranscriptionResult | None] | None
    emit_event: Callable[[str, Record], None]
    was_playable: bool = False
    made: Made = field(default_factory=Made)

    @property
    def out(self) -> Path:
        return self.work / "out"

    @property
    def log_path(self) -> Path:
        return self.work / "ffmpeg.log"


def plan_pieces(media: MediaInfo, ladder: list[Rendition], speech: bool) -> list[Piece]:
    seconds = media.duration or 1.0
    pieces: list[Piece] = []
    if media.kind == "audio":
        pieces.append(Piece("audio", "transcode", seconds * DECODE_COST))
    else:
        # Slides are encoded at STATIC_FPS: a third of the frames, less than a third the work.
        rate = STATIC_FPS / 30 if media.static else 1.0
        low = len(ladder) - 1
        for index in reversed(range(len(ladder))):
            rung = ladder[index]
            share = rate * rung.width * rung.height / FULL_FRAME
            # The larger rungs share one decode (`_larger_rungs`).
            decode = DECODE_COST if index == low else DECODE_COST / low
            pieces.append(
                Piece(f"rung{index}", "transcode", seconds * (decode + ENCODE_COST_720P * share))
            )
        pieces += [
            Piece("poster", "transcode", 1.0),
            Piece("storyboard", "transcode", seconds * SMALL_COST),
            Piece("mp4", "transcode", seconds * SMALL_COST),
        ]
    if speech:
        pieces.append(Piece("transcript", "transcribe", seconds * SPEECH_COST, lane=SPEECH))
    return pieces


def run_pieces(job: JobParts) -> Record:
    """Make, publish and announce every piece; the final `ready` record."""
    job.out.mkdir(parents=True, exist_ok=True)
    media = job.media
    ladder = (
        [Rendition(0, 0, 0, AUDIO_BITRATE)]
        if media.kind == "audio"
        else choose_ladder(media.width or 0, media.height or 0, media.has_audio)
    )
    speech = job.transcribe is not None
    job.status.plan(plan_pieces(media, ladder, speech))
    for name in list(job.status.pieces):
        if job.checkpoint.done(name):
            job.status.skip(name)
    deadline = Deadline(job.timeout)
    if media.kind == "audio":
        _audio(job, deadline)
    else:
        _first_rung(job, ladder, deadline)
    transcript = _Transcript(job) if speech else None
    try:
        if media.kind != "audio":
            _storyboard(job, ladder, deadline)
            _larger_rungs(job, ladder, deadline)
            _mp4(job, deadline)
        if transcript is not None and transcript.running:
            job.status.set_stage("transcribe")
        captions = transcript.result() if transcript is not None else None
    except BaseException:
        if transcript is not None:
            transcript.stop()
        raise
    job.status.finish_lane(SPEECH)
    if captions is not None:
        _captions(job, captions)
    job.made.captions = captions
    return job.status.write(
        state="ready",
        progress={"stage": "publish", "percent": 100.0, "eta_s": 0},
        media=media.public(),
        outputs=build_outputs(job.made, job.original_url),
        error=None,
    )


# -- the pieces -------------------------------------------------------------------


def _ffmpeg(job: JobParts, args: list[str], deadline: Deadline, piece: str | None) -> None:
    run_ffmpeg(
        args,
        tools=job.tools,
        duration=job.media.duration if piece else None,
        timeout=deadline.left(),
        log_path=job.log_path,
        on_progress=job.status.piece(piece) if piece else None,
    )


def _make(job: JobParts, piece: str, make: Callable[[], Any]) -> Any:
    """Run `make` unless the checkpoint has `piece`; record what it returned."""
    if job.checkpoint.done(piece):
        return job.checkpoint.get(piece)
    job.checkpoint.started(piece)
    value = make()
    job.checkpoint.finish(piece, value)
    if piece in job.status.pieces:
        job.status.report(piece, 100.0)
    return value


def _encode_rungs(
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


def _first_rung(job: JobParts, ladder: list[Rendition], deadline: Deadline) -> None:
    low = len(ladder) - 1
    _encode_rungs(job, ladder, [low], deadline, first_preset(job.media))

    def poster() -> str | None:
        job.status.piece("poster")
        return make_poster(job.tools, job.out, job.media, ladder[0], deadline, job.log_path)

    job.made.poster = _make(job, "poster", poster) or None
    write_master(job.out / "hls", sorted(job.made.rungs))
    names = [*([job.made.poster] if job.made.poster else []), *_files(job, rung_dir(low))]
    _publish(job, "first", names + [MASTER])
    _playable(job)


def _audio(job: JobParts, deadline: Deadline) -> None:
    def make() -> None:
        shutil.rmtree(job.out / "hls", ignore_errors=True)
        (job.out / "hls").mkdir(parents=True)
        _ffmpeg(job, audio_args(job.tools, job.out, job.media), deadline, "audio")

    _make(job, "audio", make)
    job.made.rungs[0] = (Rendition(0, 0, 0, AUDIO_BITRATE), "hls/v0/index.m3u8")
    job.made.download = "audio.m4a"
    names = ["audio.m4a", *_files(job, "hls/v0")]
    _publish(job, "audio", names + [MASTER])
    _playable(job)


def _storyboard(job: JobParts, ladder: list[Rendition], deadline: Deadline) -> None:
    low = len(ladder) - 1
    rung = ladder[low]
    duration = job.media.duration or 0.0
    if duration <= 0:
        return
    board = storyboard.plan(duration, rung.width, rung.height)

    def make() -> bool:
        playlist = job.out / rung_dir(low) / "index.m3u8"
        job.status.piece("storyboard")
        _ffmpeg(job, storyboard.sprite_args(playlist, job.out, board), deadline, None)
        if not (job.out / storyboard.SPRITE).is_file():
            return False
        (job.out / storyboard.VTT).write_text(storyboard.vtt(board, duration))
        return True

    if _make(job, "storyboard", make):
        _publish(job, "storyboard", [storyboard.SPRITE, storyboard.VTT])
        job.made.storyboard = storyboard.VTT
        _write_outputs(job)


def _larger_rungs(job: JobParts, ladder: list[Rendition], deadline: Deadline) -> None:
    """Every rung but the smallest, from one decode; then each published, smallest
    first, and added to the master."""
    indexes = list(reversed(range(len(ladder) - 1)))
    if not indexes:
        return
    _encode_rungs(job, ladder, indexes, deadline, ladder_preset(job.media))
    for index in indexes:
        write_master(job.out / "hls", sorted(i for i in job.made.rungs if i >= index))
        _publish(job, f"rung{index}", [*_files(job, rung_dir(index)), MASTER])
    _write_outputs(job)


def _mp4(job: JobParts, deadline: Deadline) -> None:
    def make() -> None:
        job.status.piece("mp4")
        (job.out / "video.mp4").unlink(missing_ok=True)
        _ffmpeg(job, mp4_args(job.out), deadline, None)

    _make(job, "mp4", make)
    job.made.download = "video.mp4"
    _publish(job, "mp4", ["video.mp4"])


def _captions(job: JobParts, captions: TranscriptionResult) -> None:
    """The transcript's files into the outputs, and its subtitles into the master."""
    source = job.work / "text"
    for name in captions.files:
        target = job.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (source / name).is_file():
            shutil.copyfile(source / name, target)
    names = list(captions.files)
    if (job.out / MASTER).is_file():
        vtt = (job.out / captions.vtt).read_text(encoding="utf-8")
        duration = captions.duration or job.media.duration or 0.0
        written = add_subtitles_vtt(job.out / "hls", captions.language, vtt, duration)
        names += [f"hls/{name}" for name in written if name != "master.m3u8"] + [MASTER]
        captions.hls_subtitles = f"hls/subs_{captions.language}.m3u8"
    _publish(job, "captions", names, force=True)


# -- publishing and the status ------------------------------------------------------


def _files(job: JobParts, folder: str) -> list[str]:
    """The published names under `folder`, playlists after the segments they list
    (a rung's own one-variant master left out: the job's master replaces it)."""
    names = [
        str(p.relative_to(job.out))
        for p in (job.out / folder).rglob("*")
        if p.is_file() and p.name != VARIANT
    ]
    return sorted(names, key=lambda name: (name.endswith(".m3u8"), name))


def _publish(job: JobParts, piece: str, names: list[str], force: bool = False) -> None:
    """Add `names` to what is public, in that order (a playlist after what it lists)."""
    key = f"published:{piece}"
    if not force and job.checkpoint.done(key):
        urls = job.checkpoint.get(key)
    else:
        items = [(job.out / name, name) for name in names]
        urls = job.publisher.add(job.upload_id, items, lambda _p: None)
        job.checkpoint.finish(key, urls)
    job.made.urls.update(urls)


def _playable(job: JobParts) -> None:
    record = job.status.write(
        state="playable",
        media=job.media.public(),
        outputs=build_outputs(job.made, job.original_url),
    )
    if not job.was_playable:  # a redo of a job that got this far says it once only
        job.emit_event("media.playable", record)
    log_event(log, "pipeline.playable", upload_id=job.upload_id)


def _write_outputs(job: JobParts) -> None:
    job.status.write(outputs=build_outputs(job.made, job.original_url))


class _Transcript:
    """The transcript, made in a thread beside the encoder (or read from the checkpoint)."""

    def __init__(self, job: JobParts) -> None:
        self.job = job
        self.stopped = threading.Event()
        self.value: TranscriptionResult | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        saved = job.checkpoint.get("transcript")
        if saved is not None:
            self.value = TranscriptionResult(**saved) if isinstance(saved, dict) else None
            return
        self.thread = threading.Thread(target=self._run, name="transcript", daemon=True)
        self.thread.start()

    def _progress(self, percent: float) -> None:
        if self.stopped.is_set():  # the job ended: stop the speech engine's ffmpeg too
            raise UploadEnded(self.job.upload_id, "stopped")
        self.job.status.report("transcript", percent)

    def _run(self) -> None:
        assert self.job.transcribe is not None
        try:
            self.job.checkpoint.started("transcript")
            self.job.status.piece("transcript")
            self.value = self.job.transcribe(self.job.work / "text", self._progress)
            saved = asdict(self.value) if self.value is not None else False
            self.job.checkpoint.finish("transcript", saved)
        except BaseException as exc:  # handed to the job's thread in result()
            self.error = exc

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def result(self) -> TranscriptionResult | None:
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
