"""Cue building and the WebVTT/SRT writers."""

from __future__ import annotations

import pytest
from captions_helpers import parse_srt, parse_vtt

from processors.captions import Cue, build_cues, to_srt, to_vtt, wrap
from processors.speech import Segment, Word

pytestmark = pytest.mark.one_path

LOREM_TEXT = (
    "our lesson today covers resumable uploads with the tus protocol and how the "
    "server stores every chunk on disk before the worker transcodes the finished "
    "file into several renditions for adaptive streaming"
)
LOREM = LOREM_TEXT.split(" ")


def timed(texts: list[str], start: float = 0.0, step: float = 0.3, gap: float = 0.0) -> list[Word]:
    return [
        Word(start + i * (step + gap), start + i * (step + gap) + step, t)
        for i, t in enumerate(texts)
    ]


def segment(words: list[Word]) -> Segment:
    return Segment(words[0].start, words[-1].end, " ".join(w.text for w in words), words)


def spoken(cues: list[Cue]) -> list[str]:
    return " ".join(" ".join(c.lines) for c in cues).split()


def test_cues_have_at_most_two_lines_of_42_characters_split_between_words() -> None:
    cues = build_cues([segment(timed(LOREM))])
    assert len(cues) > 2
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2
        assert all(0 < len(line) <= 42 for line in cue.lines)
        assert all(not line.startswith(" ") and not line.endswith(" ") for line in cue.lines)
    assert spoken(cues) == LOREM  # every word once, in order, none cut in two


def test_cues_are_filled_rather_than_cut_early() -> None:
    cues = build_cues([segment(timed(LOREM, step=0.2))])
    # Every cue but the last was full: the next word would not have fitted.
    for cue, following in zip(cues, cues[1:], strict=False):
        next_word = following.lines[0].split()[0]
        assert wrap([*" ".join(cue.lines).split(), next_word]) is None


def test_cues_last_at_most_7_seconds() -> None:
    # Slow speech: short words, one a second, would fit many to a cue.
    words = timed(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"], step=0.5, gap=0.5)
    cues = build_cues([segment(words)])
    assert len(cues) == 2
    assert all(cue.end - cue.start <= 7.0 for cue in cues)
    assert spoken(cues) == [w.text for w in words]
    assert cues[0].start == 0.0 and cues[1].start == 7.0


def test_a_single_very_long_word_is_held_at_most_7_seconds() -> None:
    cues = build_cues([Segment(0, 12, "Hmm", [Word(1.0, 12.0, "Hmm")])])
    assert cues == [Cue(1.0, 8.0, ("Hmm",))]


def test_two_lines_are_balanced() -> None:
    sentence = "this sentence is just a little longer than one caption line"
    words = sentence.split(" ")
    lines = wrap(words)
    assert lines is not None and len(lines) == 2
    assert abs(len(lines[0]) - len(lines[1])) <= 8
    assert wrap(["x" * 43]) is None
    assert wrap(["word"] * 20) is None


def test_segment_ends_and_long_pauses_start_new_cues() -> None:
    first = timed(["Hello", "there."])
    second = timed(["General", "Kenobi."], start=0.7)
    paused = [Word(3.0, 3.3, "after"), Word(5.0, 5.3, "pause")]  # 1.7 s of silence between
    cues = build_cues([segment(first), segment(second), segment(paused)])
    assert [c.lines for c in cues] == [
        ("Hello there.",),
        ("General Kenobi.",),
        ("after",),
        ("pause",),
    ]


def test_cues_never_overlap_and_stay_inside_the_media() -> None:
    words = [Word(0.0, 1.0, "one"), Word(0.5, 2.5, "two")]
    late = [Word(9.5, 10.4, "end"), Word(10.4, 11.0, "beyond")]
    cues = build_cues([segment(words), segment(late)], duration=10.0)
    assert [c.lines for c in cues] == [("one two",), ("end beyond",)]
    assert cues[-1].end == 10.0
    ends = 0.0
    for cue in cues:
        assert ends <= cue.start < cue.end <= 10.0
        ends = cue.end


def test_short_cues_are_held_for_a_second_when_there_is_room() -> None:
    cues = build_cues(
        [
            segment([Word(0.0, 0.2, "Yes.")]),
            segment([Word(0.5, 0.7, "No.")]),
            segment([Word(5.0, 5.2, "Maybe.")]),
        ]
    )
    assert [(c.start, c.end) for c in cues] == [(0.0, 0.5), (0.5, 1.5), (5.0, 6.0)]


def test_words_longer_than_a_line_are_cut_into_lines() -> None:
    url = "https://example.com/" + "a" * 60
    cues = build_cues([segment([Word(0, 1, "see"), Word(1, 3, url)])])
    assert "".join("".join(c.lines) for c in cues).replace("see", "", 1) == url
    assert all(len(line) <= 42 for c in cues for line in c.lines)


def test_segments_without_word_times_are_timed_by_length() -> None:
    cues = build_cues([Segment(2.0, 6.0, "an engine without word times", [])])
    assert cues == [Cue(2.0, 6.0, ("an engine without word times",))]
    long = Segment(0.0, 20.0, " ".join(LOREM), [])
    cues = build_cues([long])
    assert spoken(cues) == LOREM and all(c.end - c.start <= 7.0 for c in cues)


def test_vtt_writer_output_parses_and_escapes() -> None:
    cues = [
        Cue(0.0, 1.5, ("Fish & chips <b>", "costs > 5")),
        Cue(3725.25, 3727.0, ("an hour in",)),
    ]
    text = to_vtt(cues)
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nFish &amp; chips &lt;b&gt;\n")
    parsed = parse_vtt(text)
    assert [(c.start, c.end) for c in parsed] == [(0.0, 1.5), (3725.25, 3727.0)]
    assert parsed[1].lines == ["an hour in"]
    assert "01:02:05.250 --> 01:02:07.000" in text
    with_header = to_vtt(cues, header="X-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000")
    assert with_header.split("\n")[1] == "X-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000"
    assert parse_vtt(with_header) == parsed


def test_srt_writer_output_parses() -> None:
    cues = [Cue(0.0, 1.5, ("first", "two lines")), Cue(2.0, 4.0006, ("a --> b",))]
    text = to_srt(cues)
    assert text.startswith("1\n00:00:00,000 --> 00:00:01,500\nfirst\ntwo lines\n\n2\n")
    parsed = parse_srt(text)
    assert [(c.start, c.end) for c in parsed] == [(0.0, 1.5), (2.0, 4.001)]
    assert parsed[1].lines == ["a -> b"]
