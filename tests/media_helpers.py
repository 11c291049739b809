"""Media generated on the spot (ffmpeg lavfi sources, espeak-ng speech): never downloaded.

Shared by the pipeline, transcription and end-to-end tests. Every generator
returns the path it wrote.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True)


def make_speech(path: Path, text: str, voice: str = "en-us+f2", speed: int = 120) -> Path:
    """A WAV of espeak-ng reading `text` (this voice is recognised best by Whisper)."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is required"
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([espeak, "-v", voice, "-s", str(speed), "-w", str(path), text])
    return path


def make_video(
    path: Path,
    seconds: float = 10,
    size: str = "640x360",
    rate: int = 30,
    with_audio: bool = True,
    speech: str | None = None,
    faststart: bool = False,
) -> Path:
    """An H.264/AAC clip of the testsrc pattern with a sine tone, or spoken `speech`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [*FFMPEG, "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate}"]
    if speech is not None:
        wav = make_speech(path.with_suffix(".speech.wav"), speech)
        # Pad the speech with silence so the audio lasts as long as the video.
        args += ["-i", str(wav), "-filter_complex", f"[1:a]apad=whole_dur={seconds}[a]"]
        args += ["-map", "0:v", "-map", "[a]"]
    elif with_audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast"]
    if speech is not None or with_audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    if faststart:
        args += ["-movflags", "+faststart"]
    args += ["-t", str(seconds), str(path)]
    _run(args)
    return path


def make_audio(
    path: Path, seconds: float = 5, speech: str | None = None, codec: str | None = None
) -> Path:
    """Audio only: a sine tone or speech; the format follows the suffix (.m4a, .mp3, .wav)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if speech is not None:
        source = ["-i", str(make_speech(path.with_suffix(".speech.wav"), speech))]
    else:
        source = ["-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}"]
    codec_args = ["-c:a", codec] if codec else []
    _run([*FFMPEG, *source, *codec_args, str(path)])
    return path


def make_text_file(path: Path, text: str = "this is not a video\n" * 50) -> Path:
    """Plain text, whatever the name says (e.g. `notes.mp4`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_truncated_mp4(path: Path, seconds: float = 10, keep: float = 0.5) -> Path:
    """A faststart MP4 cut to `keep` of its size: it probes fine but cannot be decoded.

    With `+faststart` the index (moov) comes first, so ffprobe still reports a
    10 s clip; the samples past the cut are missing, as after a broken copy.
    """
    whole = make_video(path.with_suffix(".whole.mp4"), seconds=seconds, faststart=True)
    data = whole.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    whole.unlink()
    return path
