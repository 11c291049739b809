"""Audio for speech engines: ffmpeg decodes to 16 kHz mono float32 through a pipe.

Why a pipe and not faster-whisper's own decoder: `faster_whisper.decode_audio`
collects the whole track in memory and `WhisperModel.transcribe` then computes
the mel spectrogram of all of it at once (hundreds of megabytes per hour of
audio, plus the STFT's temporaries). Reading the pipe `n` samples at a time
keeps at most one window in memory whatever the media's length, and ffmpeg
reads any container the transcoder accepts.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from processors.media_tools import MediaTools
from processors.speech import SAMPLE_RATE

PROBE_TIMEOUT = 30.0


class AudioDecodeError(RuntimeError):
    """ffmpeg could not decode the audio track."""


@dataclass(frozen=True)
class AudioInfo:
    duration: float | None  # seconds; None when the container does not say


def probe_audio(tools: MediaTools) -> AudioInfo | None:
    """The first audio stream's facts, or None when the media has no audio stream."""
    out = tools.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "a",
            "-show_entries", "stream=index,duration:format=duration",
            "-of", "json", *tools.input(),
        ],
        duration=None,
        timeout=PROBE_TIMEOUT,
    )  # fmt: skip
    if out.returncode != 0:
        raise AudioDecodeError(f"ffprobe failed: {out.stderr.decode(errors='replace')[-500:]}")
    data = json.loads(out.stdout or b"{}")
    streams = data.get("streams") or []
    if not streams:
        return None
    duration = _float(streams[0].get("duration")) or _float(data.get("format", {}).get("duration"))
    return AudioInfo(duration=duration)


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


class PcmReader:
    """Reads the first audio stream of the upload as float32 samples, `n` at a time."""

    def __init__(self, tools: MediaTools, duration: float | None = None) -> None:
        # stderr goes to a file: an unread pipe could fill up and stall ffmpeg.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._proc = subprocess.Popen(
            tools.command([
                "ffmpeg", "-nostdin", "-v", "error", *tools.input(),
                "-map", "0:a:0", "-vn", "-sn", "-dn",
                "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
            ], duration),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )  # fmt: skip
        self.samples_read = 0

    def read(self, n: int) -> np.ndarray:
        """Up to `n` samples; fewer only at the end of the stream."""
        assert self._proc.stdout is not None
        want = n * 4
        chunks: list[bytes] = []
        got = 0
        while got < want:
            chunk = self._proc.stdout.read(want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
        samples = np.frombuffer(data[: len(data) - len(data) % 4], dtype="<f4")
        self.samples_read += len(samples)
        if got < want:
            self._check_exit()
        return samples

    def _check_exit(self) -> None:
        code = self._proc.wait()
        if code != 0:
            self._stderr.seek(0)
            message = self._stderr.read().decode(errors="replace")[-500:]
            raise AudioDecodeError(f"ffmpeg exited with {code}: {message}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc.wait()
        self._stderr.close()

    def __enter__(self) -> PcmReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
