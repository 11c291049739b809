"""The transcript, made beside the encoder, and the captions it gives the outputs.

The transcript runs in a thread of its own from the moment the upload is
playable, so the speech engine and the encoder share the job's time instead of
queueing; its result is checkpointed like any piece (`False`: none to make).
When it is done, its files join the outputs and its subtitles the HLS master.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import asdict

from upload_service.core.status import UploadEnded

from .hls_subtitles import add_subtitles_vtt
from .job_parts import JobParts
from .piece_publishing import publish_piece
from .transcode import MASTER
from .transcribe import TranscriptionResult


class TranscriptThread:
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


def publish_captions(job: JobParts, captions: TranscriptionResult) -> None:
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
    publish_piece(job, "captions", names, force=True)
