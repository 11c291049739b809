"""Helpers for the transcription tests: strict caption parsers, WER, generated media."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SPOKEN = (
    "Welcome to the course. Today we will learn how to upload large video files "
    "without blocking the server. Each lesson has captions generated automatically."
)

# About 48 s: several transcription windows when they are made small.
LECTURE = (
    "Welcome to the second lesson of this course. Today we talk about resumable uploads. "
    "A large video file is sent to the server in small pieces. "
    "Each piece is written to disk as soon as it arrives, so nothing is held in memory. "
    "If the network connection drops, the browser asks the server how much it already has, "
    "and then continues from that point. "
    "When the last piece is stored, a background worker starts. "
    "It makes several versions of the video for phones, tablets and large screens. "
    "Finally, it writes captions, so that every student can read along."
)


@dataclass(frozen=True)
class ParsedCue:
    start: float
    end: float
    lines: list[str]


_VTT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"
_SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_vtt(text: str) -> list[ParsedCue]:
    """A strict WebVTT parser for what we write: signature, optional header lines,
    blocks separated by one blank line, `start --> end` timings, non-empty text."""
    assert text.startswith("WEBVTT\n"), "missing WEBVTT signature"
    assert text.endswith("\n") and not text.endswith("\n\n\n")
    blocks = text.rstrip("\n").split("\n\n")
    header = blocks[0].split("\n")
    assert header[0] == "WEBVTT"
    for line in header[1:]:
        assert "-->" not in line and line.strip(), f"bad header line {line!r}"
    cues = []
    timing = re.compile(rf"^{_VTT_TIME} --> {_VTT_TIME}$")
    for block in blocks[1:]:
        lines = block.split("\n")
        match = timing.match(lines[0])
        assert match, f"bad timing line {lines[0]!r}"
        g = match.groups()
        text_lines = lines[1:]
        assert text_lines and all(line.strip() for line in text_lines), f"empty cue {block!r}"
        for line in text_lines:
            assert (
                "-->" not in line and "<" not in line and not re.search(r"&(?!amp;|lt;|gt;)", line)
            )
        cues.append(ParsedCue(_seconds(*g[:4]), _seconds(*g[4:]), text_lines))
    return cues


def parse_srt(text: str) -> list[ParsedCue]:
    """A strict SRT parser: numbered blocks from 1, `start --> end` with commas."""
    assert text.endswith("\n")
    cues = []
    timing = re.compile(rf"^{_SRT_TIME} --> {_SRT_TIME}$")
    for number, block in enumerate(text.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), f"expected cue number {number}, got {lines[0]!r}"
        match = timing.match(lines[1])
        assert match, f"bad timing line {lines[1]!r}"
        g = match.groups()
        assert len(lines) > 2 and all(line.strip() for line in lines[2:])
        cues.append(ParsedCue(_seconds(*g[:4]), _seconds(*g[4:]), lines[2:]))
    return cues


def normalize(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(len(ref), 1)


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


def speech_wav(path: Path, text: str = SPOKEN) -> Path:
    run("espeak-ng", "-v", "en-us+f2", "-s", "120", "-w", str(path), text)
    return path


def video_with_audio(path: Path, audio: list[str], seconds: float) -> Path:
    """A lavfi test picture with the given audio input arguments, cut to `seconds`."""
    run(
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x180:rate=15",
        *audio,
        "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast",
        "-c:a", "aac", str(path),
    )  # fmt: skip
    return path


def video_without_audio(path: Path, seconds: float = 3) -> Path:
    run(
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x180:rate=15",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", str(path),
    )  # fmt: skip
    return path


def make_hls(source: Path, hls_dir: Path) -> Path:
    """Two renditions and a master playlist, as the transcoder makes them."""
    hls_dir.mkdir(parents=True, exist_ok=True)
    run(
        "ffmpeg", "-v", "error", "-y", "-i", str(source),
        "-filter_complex", "[0:v]split=2[a][b];[a]scale=320:180[v0];[b]scale=160:90[v1]",
        "-map", "[v0]", "-map", "0:a", "-map", "[v1]", "-map", "0:a",
        "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
        "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod",
        "-var_stream_map", "v:0,a:0 v:1,a:1", "-master_pl_name", "master.m3u8",
        "-hls_segment_filename", str(hls_dir / "stream_%v_%03d.ts"),
        str(hls_dir / "stream_%v.m3u8"),
    )  # fmt: skip
    return hls_dir / "master.m3u8"
