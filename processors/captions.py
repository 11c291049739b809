"""Caption cues from timed words, and the WebVTT and SRT writers.

Cues follow common subtitle guidelines (BBC, Netflix): at most 2 lines of at most
42 characters and at most 7 s on screen; breaks fall between words, using the
words' own timestamps, and at the engine's segment ends (usually sentence ends).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from processors.speech import Segment, Word

MAX_CHARS = 42
MAX_LINES = 2
MAX_DURATION = 7.0
# A pause this long inside a segment starts a new cue rather than leaving
# the last words on screen through the silence.
MAX_GAP = 1.5
# Short cues are held this long when the next cue leaves room: readable, not flashing.
MIN_DURATION = 1.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def wrap(
    words: Sequence[str], max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES
) -> list[str] | None:
    """Lines for `words`, or None when they do not fit; two lines are balanced."""
    lines: list[str] = []
    for word in words:  # greedy fill uses the fewest lines: it decides whether they fit
        if lines and len(lines[-1]) + 1 + len(word) <= max_chars:
            lines[-1] += " " + word
        elif len(word) <= max_chars:
            lines.append(word)
        else:
            return None
    if len(lines) > max_lines:
        return None
    if len(lines) == 2:
        # Of all the breaks that fit, take the one with the shortest longer line.
        fits = [
            (max(top, bottom), top, i)
            for i in range(1, len(words))
            if (top := len(" ".join(words[:i]))) <= max_chars
            and (bottom := len(" ".join(words[i:]))) <= max_chars
        ]
        cut = min(fits)[2]  # never empty: the greedy break is one of them
        lines = [" ".join(words[:cut]), " ".join(words[cut:])]
    return lines


def build_cues(
    segments: Iterable[Segment],
    duration: float | None = None,
    *,
    max_chars: int = MAX_CHARS,
    max_lines: int = MAX_LINES,
    max_duration: float = MAX_DURATION,
) -> list[Cue]:
    """Cues in time order, none overlapping, all inside [0, duration]."""
    groups: list[list[Word]] = []
    for segment in segments:
        current: list[Word] = []
        for word in _split_long(segment_words(segment), max_chars):
            if current and (
                wrap([w.text for w in current + [word]], max_chars, max_lines) is None
                or word.end - current[0].start > max_duration
                or word.start - current[-1].end > MAX_GAP
            ):
                groups.append(current)
                current = []
            current.append(word)
        if current:  # a segment's end is a sentence end: never run past it
            groups.append(current)
    return _timed(groups, duration, max_chars, max_lines, max_duration)


def _timed(
    groups: list[list[Word]],
    duration: float | None,
    max_chars: int,
    max_lines: int,
    max_duration: float,
) -> list[Cue]:
    limit = duration if duration else float("inf")
    cues: list[Cue] = []
    previous_end = 0.0
    for group in groups:
        lines = wrap([w.text for w in group], max_chars, max_lines)
        assert lines is not None  # groups were built to fit
        start = max(group[0].start, previous_end, 0.0)
        end = min(group[-1].end, start + max_duration, limit)
        if end <= start:  # timestamps past the media's end: squeeze in before it
            start = max(previous_end, min(start, limit - 0.05))
            if end <= start:
                continue
        cues.append(Cue(start, end, tuple(lines)))
        previous_end = end
    # Second pass: hold short cues a little longer where the next one leaves room.
    for i, cue in enumerate(cues):
        if cue.end - cue.start < MIN_DURATION:
            room = cues[i + 1].start if i + 1 < len(cues) else limit
            cues[i] = Cue(cue.start, min(cue.start + MIN_DURATION, room), cue.lines)
    return cues


def segment_words(segment: Segment) -> list[Word]:
    """The segment's timed words, or (for engines without word times) its text
    split into words timed in proportion to their length."""
    if segment.words:
        return list(segment.words)
    texts = segment.text.split()
    total = sum(len(t) for t in texts) or 1
    span = max(segment.end - segment.start, 0.0)
    words, t = [], segment.start
    for text in texts:
        step = span * len(text) / total
        words.append(Word(t, t + step, text))
        t += step
    return words


def _split_long(words: Iterable[Word], max_chars: int) -> Iterable[Word]:
    # A "word" longer than a line (a URL, a run of digits) is cut into line-sized
    # pieces: the only case in which a break falls inside a word.
    for word in words:
        if len(word.text) <= max_chars:
            yield word
            continue
        pieces = [word.text[i : i + max_chars] for i in range(0, len(word.text), max_chars)]
        step = (word.end - word.start) / len(pieces)
        for k, piece in enumerate(pieces):
            yield Word(word.start + k * step, word.start + (k + 1) * step, piece, word.probability)


def timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Iterable[Cue], header: str = "") -> str:
    """WebVTT text; `header` lines (such as X-TIMESTAMP-MAP) go right after the signature."""
    parts = ["WEBVTT\n" + (header.rstrip("\n") + "\n" if header else "")]
    for cue in cues:
        timing = f"{timestamp(cue.start, '.')} --> {timestamp(cue.end, '.')}"
        parts.append(timing + "\n" + "\n".join(_vtt_escape(line) for line in cue.lines) + "\n")
    return "\n".join(parts)


def to_srt(cues: Iterable[Cue]) -> str:
    parts = []
    for index, cue in enumerate(cues, start=1):
        timing = f"{timestamp(cue.start, ',')} --> {timestamp(cue.end, ',')}"
        # SRT has no escaping: keep a cue's text from looking like a timing line.
        text = "\n".join(line.replace("-->", "->") for line in cue.lines)
        parts.append(f"{index}\n{timing}\n{text}\n")
    return "\n".join(parts)
