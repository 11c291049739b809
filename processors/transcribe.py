"""Speech to captions: the transcription step of the pipeline.

Audio is decoded by ffmpeg into a pipe and transcribed one window at a time
(`processors.audio` says why), so memory stays bounded on media of any length.
A window's last segment may have been cut off by the window's end: it is left
out and transcribed again at the start of the next window.

Outputs under `out_dir`: `captions/<lang>.vtt`, `captions/<lang>.srt`,
`transcript.json`, `transcript.txt`, and a subtitles rendition in
`hls/master.m3u8` when that playlist exists. Media without audio or without
speech gets None and no files: that is not a failure.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from processors.audio import PcmReader, probe_audio
from processors.captions import Cue, build_cues, to_srt, to_vtt
from processors.hls_subtitles import add_subtitles
from processors.speech import SAMPLE_RATE, Segment, SpeechEngine, Word, get_engine
from upload_service.logs import log_event

log = logging.getLogger(__name__)

# Whisper reads 30 s at a time; a 60 s window costs about 4 MB of samples and
# re-reads little at its seams.
WINDOW_SECONDS = 60.0
# Speech ending closer than this to a window's end may continue past it.
GUARD_SECONDS = 1.0
# Peak below -60 dBFS: nothing to hear, so the engine is not even asked.
SILENCE_PEAK = 10 ** (-60 / 20)


@dataclass
class TranscriptionResult:
    language: str
    # relative names (under out_dir) of the files written
    vtt: str
    srt: str
    transcript_json: str
    text: str
    extra: dict[str, str] = field(default_factory=dict)
    # every file written or changed, relative to out_dir (HLS ones included)
    files: list[str] = field(default_factory=list)
    # the subtitles playlist added to hls/master.m3u8, if there was one
    hls_subtitles: str | None = None
    duration: float | None = None
    words: int = 0


def transcribe_media(
    source: Path,
    out_dir: Path,
    language: str | None,
    model: str | None,
    on_progress: Callable[[float], None],
    *,
    engine: SpeechEngine | None = None,
    window_seconds: float = WINDOW_SECONDS,
) -> TranscriptionResult | None:
    """Write captions for `source` into `out_dir`; None when there is no speech."""
    info = probe_audio(source)
    if info is None:
        log_event(log, "transcribe.no_audio", source=str(source))
        return None
    engine = engine or get_engine(model)
    started = time.monotonic()
    detected, segments = transcribe_stream(
        source, engine, language, info.duration, on_progress, window_seconds
    )
    if not any(s.words or s.text for s in segments):
        log_event(log, "transcribe.no_speech", source=str(source))
        return None
    lang = detected or "und"
    duration = info.duration or max(s.end for s in segments)
    cues = build_cues(segments, duration)
    result = _write_outputs(out_dir, lang, segments, cues, duration, engine.name)
    on_progress(100.0)
    elapsed = time.monotonic() - started
    log_event(
        log, "transcribe.done", language=lang, duration=duration, words=result.words,
        cues=len(cues), seconds=round(elapsed, 2), rtf=round(elapsed / duration, 3),
    )  # fmt: skip
    return result


def transcribe_stream(
    source: Path,
    engine: SpeechEngine,
    language: str | None,
    duration: float | None,
    on_progress: Callable[[float], None],
    window_seconds: float = WINDOW_SECONDS,
) -> tuple[str | None, list[Segment]]:
    """(language, segments in media time) for the first audio stream of `source`."""
    window = int(window_seconds * SAMPLE_RATE)
    guard = int(min(GUARD_SECONDS, window_seconds / 4) * SAMPLE_RATE)
    segments: list[Segment] = []
    carry = np.empty(0, dtype=np.float32)
    offset = 0  # media position of carry[0], in samples
    detected: str | None = None
    with PcmReader(source) as reader:
        while True:
            fresh = reader.read(window - len(carry))
            final = len(carry) + len(fresh) < window
            audio = np.concatenate([carry, fresh]) if len(carry) else fresh
            if len(audio) == 0:
                break
            found: list[Segment] = []
            if float(np.max(np.abs(audio))) >= SILENCE_PEAK:
                result = engine.transcribe(audio, language)
                found = list(result.segments)
                if found and detected is None:
                    # The first speech decides for the rest, in the engine's own
                    # spelling ("en", not the "EN-us" a token may carry).
                    detected = language = result.language
            kept, cut = (found, len(audio)) if final else _seam(found, len(audio), guard)
            base = offset / SAMPLE_RATE
            segments.extend(_shifted(s, base) for s in kept)
            if final:
                break
            carry = audio[cut:]
            offset += cut
            if duration:
                on_progress(min(99.0, 100.0 * reader.samples_read / SAMPLE_RATE / duration))
    return detected, segments


def _seam(found: list[Segment], length: int, guard: int) -> tuple[list[Segment], int]:
    """Which segments of a full window to keep, and the sample at which the next
    window starts (everything from there on is transcribed again)."""
    seam = length - guard
    if not found:
        return [], seam
    *head, tail = found
    if int(tail.end * SAMPLE_RATE) <= seam:
        return found, seam  # speech ended before the seam: only the guard is read again
    tail_start = int(tail.start * SAMPLE_RATE)
    if tail_start >= length // 2:
        return head, tail_start  # the tail starts afresh in the next window
    # One segment fills most of the window: keep its words that end clear of the
    # seam and start again at the first word that does not, so every window makes
    # progress; without word times there is nothing better than keeping it all.
    keep = [w for w in tail.words if int(w.end * SAMPLE_RATE) <= seam]
    if not keep:
        return found, length
    rest = tail.words[len(keep) :]
    cut = int(rest[0].start * SAMPLE_RATE) if rest else length
    cut = max(cut, int(keep[-1].end * SAMPLE_RATE))
    partial = Segment(tail.start, keep[-1].end, " ".join(w.text for w in keep), keep)
    return [*head, partial], cut


def _shifted(segment: Segment, seconds: float) -> Segment:
    return Segment(
        segment.start + seconds,
        segment.end + seconds,
        segment.text,
        [Word(w.start + seconds, w.end + seconds, w.text, w.probability) for w in segment.words],
    )


def _write_outputs(
    out_dir: Path,
    lang: str,
    segments: list[Segment],
    cues: list[Cue],
    duration: float,
    model_name: str,
) -> TranscriptionResult:
    names = {
        "vtt": f"captions/{lang}.vtt",
        "srt": f"captions/{lang}.srt",
        "json": "transcript.json",
        "text": "transcript.txt",
    }
    transcript = {
        "language": lang,
        "duration": round(duration, 3),
        "model": Path(model_name).name if os.sep in model_name else model_name,
        "text": " ".join(s.text for s in segments if s.text),
        "segments": [
            {
                "id": i,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "words": [
                    {
                        "word": w.text,
                        "start": round(w.start, 3),
                        "end": round(w.end, 3),
                        **({"probability": round(w.probability, 3)} if w.probability else {}),
                    }
                    for w in s.words
                ],
            }
            for i, s in enumerate(segments)
        ],
    }
    _write(out_dir / names["vtt"], to_vtt(cues))
    _write(out_dir / names["srt"], to_srt(cues))
    _write(out_dir / names["json"], json.dumps(transcript, ensure_ascii=False, indent=1) + "\n")
    _write(out_dir / names["text"], "\n".join(s.text for s in segments if s.text) + "\n")
    files = list(names.values())
    hls_playlist = None
    if (out_dir / "hls" / "master.m3u8").is_file():
        written = add_subtitles(out_dir / "hls", lang, cues, duration)
        files += [f"hls/{name}" for name in written]
        hls_playlist = f"hls/subs_{lang}.m3u8"
    return TranscriptionResult(
        language=lang,
        vtt=names["vtt"],
        srt=names["srt"],
        transcript_json=names["json"],
        text=names["text"],
        files=files,
        hls_subtitles=hls_playlist,
        duration=duration,
        words=sum(len(s.words) for s in segments),
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
