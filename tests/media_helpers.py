"""Media generated on the spot (ffmpeg lavfi sources, espeak-ng speech): never downloaded.

Shared by the pipeline, transcription and end-to-end tests. Every generator
returns the path it wrote. Besides the plain clips, the shapes of media that
real users send and that must keep working (tests/test_legit_media.py): a
still picture over narration, odd frame rates, portrait and rotated phone
video, variable frame rate, animated GIF, WebM, MKV, MOV, audio of every
common kind. The hostile ones are in tests/hostile_*.py.
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
    rate: int | str = 30,
    with_audio: bool = True,
    speech: str | None = None,
    faststart: bool = False,
    codecs: list[str] | None = None,
) -> Path:
    """An H.264/AAC clip of the testsrc pattern with a sine tone, or spoken `speech`.

    `rate` may be a fraction ("24000/1001"); `codecs` replaces the H.264/AAC
    arguments (e.g. VP9/Opus for a .webm). The container follows the suffix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [*FFMPEG, "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate}"]
    if speech is not None:
        wav = make_speech(path.with_suffix(".speech.wav"), speech)
        # Pad the speech with silence so the audio lasts as long as the video.
        args += ["-i", str(wav), "-filter_complex", f"[1:a]apad=whole_dur={seconds}[a]"]
        args += ["-map", "0:v", "-map", "[a]"]
    elif with_audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    if codecs is not None:
        args += codecs
    else:
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


# -- media that users really send, each a shape the pipeline must handle -----------------


def make_still_with_narration(
    path: Path, seconds: float = 20, size: str = "640x360", text: str | None = None
) -> Path:
    """A still picture over `seconds` of narration: one video frame, 20 s of audio.

    As `ffmpeg -i cover.png -i talk.wav out.mp4` makes it (no `-loop`): the
    video stream holds a single frame at 0 s while the audio goes on.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    cover = path.with_suffix(".cover.png")
    _run([*FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size={size}", "-frames:v", "1", str(cover)])
    talk = make_speech(
        path.with_suffix(".talk.wav"),
        text or "Welcome to this lesson. Look at the picture while I explain it.",
    )
    args = [*FFMPEG, "-i", str(cover), "-i", str(talk)]
    args += ["-filter_complex", f"[1:a]apad=whole_dur={seconds}[a]", "-map", "0:v", "-map", "[a]"]
    args += ["-c:v", "libx264", "-tune", "stillimage", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-b:a", "96k", str(path)]
    _run(args)
    return path


def _supports_display_rotation() -> bool:
    """ffmpeg >= 6 sets the display matrix with `-display_rotation`; 5.1 takes the `rotate` tag."""
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-h", "full"], capture_output=True, text=True, check=False
    )
    return "-display_rotation" in result.stdout


def make_rotated_video(
    path: Path, rotation: int = 90, seconds: float = 2, size: str = "640x360"
) -> Path:
    """A phone clip stored landscape (`size`) with a display matrix turning it by `rotation`°.

    That is how phones record portrait: the coded frames are landscape, and a
    player (or ffmpeg's autorotate) turns them for display.
    """
    plain = make_video(path.with_suffix(".plain" + path.suffix), seconds=seconds, size=size)
    if _supports_display_rotation():
        args = [*FFMPEG, "-display_rotation:v:0", str(-rotation), "-i", str(plain), "-c", "copy"]
    else:
        args = [*FFMPEG, "-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}"]
    _run([*args, str(path)])
    plain.unlink()
    return path


def make_vfr_video(path: Path, seconds: float = 4, size: str = "320x240") -> Path:
    """Variable frame rate: 30 fps for the first second, then 10 fps, timestamps kept as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = f"testsrc=duration={seconds}:size={size}:rate=30,select='lt(n\\,30)+not(mod(n\\,3))'"
    args = [*FFMPEG, "-f", "lavfi", "-i", source]
    args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast"]
    args += ["-c:a", "aac", "-b:a", "96k", str(path)]
    _run(args)
    return path


def make_animated_gif(
    path: Path, seconds: float = 2, size: str = "160x120", rate: int = 10
) -> Path:
    """An animated GIF (no audio), as screen recorders and meme tools export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = f"testsrc=duration={seconds}:size={size}:rate={rate}"
    _run([*FFMPEG, "-f", "lavfi", "-i", source, "-f", "gif", str(path)])
    return path


def make_webm(path: Path, seconds: float = 2, size: str = "320x180") -> Path:
    """WebM with VP9 video and Opus audio, as browsers' MediaRecorder writes."""
    codecs = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
    codecs += ["-c:a", "libopus", "-b:a", "64k"]
    return make_video(path, seconds=seconds, size=size, codecs=codecs)
