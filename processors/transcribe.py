"""Speech to captions: the transcription step of the pipeline.

Audio is decoded by ffmpeg into a pipe and transcribed one window at a time
(`processors.audio` says why), so memory stays bounded on media of any length.
Speech running into a window's end may have been cut off there: the window is
cut instead at a pause between words (or a word boundary) before its end, and
what follows the cut is transcribed again as the start of the next window.

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
from processors.media_tools import MediaTools
from processors.speech import SAMPLE_RATE, Segment, SpeechEngine, Word, get_engine
from upload_service.core.logs import log_event

log = logging.getLogger(__name__)

# Whisper reads 30 s at a time; a 60 s window (75 s with its read-ahead) costs
# about 5 MB of float32 samples whatever the media's length, and re-reads little
# at its seams.
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
    tools: MediaTools | None = None,
    timeout: float | None = None,
) -> TranscriptionResult | None:
    """Write captions for `source` into `out_dir`; None when there is no speech.

    Raises TranscribeTimeout when the speech engine runs past `timeout` seconds.
    """
    tools = tools or MediaTools(source.resolve())
    info = probe_audio(tools)
    if info is None:
        log_event(log, "transcribe.no_audio", source=str(source))
        return None
    engine = engine or get_engine(model)
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    detected, segments = transcribe_stream(
        tools, engine, language, info.duration, on_progress, window_seconds, deadline
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


class TranscribeTimeout(RuntimeError):
    """Transcription ran past its time limit (TRANSCRIBE_TIMEOUT_*)."""


def transcribe_stream(
    tools: MediaTools,
    engine: SpeechEngine,
    language: str | None,
    duration: float | None,
    on_progress: Callable[[float], None],
    window_seconds: float = WINDOW_SECONDS,
    deadline: float | None = None,
) -> tuple[str | None, list[Segment]]:
    """(language, segments in media time) for the first audio stream of the upload."""
    window = int(window_seconds * SAMPLE_RATE)
    guard = int(min(GUARD_SECONDS, window_seconds / 4) * SAMPLE_RATE)
    # A window reads this much further ahead: when that reaches the end, the
    # rest joins the window (Whisper garbles and invents words on very short audio).
    reach = window + window // 4
    segments: list[Segment] = []
    carry = np.empty(0, dtype=np.float32)
    offset = 0  # media position of carry[0], in samples
    detected: str | None = None
    with PcmReader(tools, duration) as reader:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TranscribeTimeout("transcription ran past its time limit")
            fresh = reader.read(reach - len(carry))
            audio = np.concatenate([carry, fresh]) if len(carry) else fresh
            final = len(audio) < reach
            if not final:
                audio, ahead = audio[:window], audio[window:]
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
            carry = np.concatenate([audio[cut:], ahead])
            offset += cut
            if duration:
                on_progress(min(99.0, 100.0 * reader.samples_read / SAMPLE_RATE / duration))
    return detected, segments


def _seam(found: list[Segment], length: int, guard: int) -> tuple[list[Segment], int]:
    """Which segments of a full window to keep, and the sample at which the next
    window starts (everything from there on is transcribed again).

    The cut goes into a pause between words where there is one in the window's
    second half (cutting through a word garbles it on both sides), else at the
    latest word boundary clear of the window's end.
    """
    seam = length - guard
    if not found:
        return [], seam
    if max(int(s.end * SAMPLE_RATE) for s in found) <= seam:
        return found, seam  # speech ended before the seam: only the guard is read again
    words = [(i, j, w) for i, s in enumerate(found) for j, w in enumerate(s.words)]
    best: tuple[float, int] | None = None
    for k in range(len(words) - 1):
        end, start = words[k][2].end, words[k + 1][2].start
        if length // 2 <= end * SAMPLE_RATE and start * SAMPLE_RATE <= seam:
            # Any pause of 0.5 s or more will do; among equals, the latest.
            score = (min(max(start - end, 0.0), 0.5), k)
            best = score if best is None or score > best else best
    if best is None:
        # No word times to go by: drop the last segment if that leaves progress.
        *head, tail = found
        tail_start = int(tail.start * SAMPLE_RATE)
        return (head, tail_start) if tail_start >= length // 2 else (found, length)
    i, j, word = words[best[1]]
    following = words[best[1] + 1][2]
    cut = int((word.end + max(following.start - word.end, 0.0) / 2) * SAMPLE_RATE)
    segment = found[i]
    kept = found[:i]
    if j + 1 == len(segment.words):
        kept.append(segment)
    else:
        part = segment.words[: j + 1]
        kept.append(Segment(segment.start, part[-1].end, " ".join(w.text for w in part), part))
    return kept, cut


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
    contents = {
        names["vtt"]: to_vtt(cues),
        names["srt"]: to_srt(cues),
        names["json"]: json.dumps(transcript, ensure_ascii=False, indent=1) + "\n",
        names["text"]: "\n".join(s.text for s in segments if s.text) + "\n",
    }
    files: list[str] = []
    hls_playlist = None
    try:
        for name, text in contents.items():
            _write(out_dir / name, text)
            files.append(name)
        if (out_dir / "hls" / "master.m3u8").is_file():
            written = add_subtitles(out_dir / "hls", lang, cues, duration)
            files += [f"hls/{name}" for name in written]
            hls_playlist = f"hls/subs_{lang}.m3u8"
    except BaseException:
        # The pipeline publishes whatever is in out_dir: no captions nobody lists.
        for name in files:
            (out_dir / name).unlink(missing_ok=True)
        raise
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
