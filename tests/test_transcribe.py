"""Transcription with the real engine (faster-whisper, the shipped tiny model) on
speech made by espeak-ng over lavfi video."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from captions_helpers import (
    LECTURE,
    SPOKEN,
    make_hls,
    parse_srt,
    parse_vtt,
    speech_wav,
    video_with_audio,
    video_without_audio,
    word_error_rate,
)

from processors.captions import MAX_CHARS, MAX_DURATION, MAX_LINES
from processors.hls_subtitles import with_subtitles
from processors.speech import Segment, Word, default_model_path, get_engine
from processors.transcribe import _seam, transcribe_media

pytestmark = pytest.mark.one_path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    wav = speech_wav(root / "speech.wav")
    clip = video_with_audio(root / "speech.mp4", ["-i", str(wav)], 14)
    make_hls(clip, root / "hls")
    return {"wav": wav, "clip": clip, "hls": root / "hls"}


def duration_of(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def test_speech_video_gets_captions_transcript_and_hls_subtitles(
    media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(media["hls"], out / "hls")
    progress: list[float] = []

    result = transcribe_media(media["clip"], out, None, None, progress.append)

    assert result is not None
    assert result.language == "en"
    assert (result.vtt, result.srt) == ("captions/en.vtt", "captions/en.srt")
    assert (result.transcript_json, result.text) == ("transcript.json", "transcript.txt")
    assert all((out / name).is_file() for name in result.files)
    assert progress and progress[-1] == 100.0 and progress == sorted(progress)

    text = (out / "transcript.txt").read_text()
    assert word_error_rate(SPOKEN, text) <= 0.25, text

    duration = duration_of(media["clip"])
    for cues in (
        parse_vtt((out / result.vtt).read_text()),
        parse_srt((out / result.srt).read_text()),
    ):
        assert word_error_rate(SPOKEN, " ".join(" ".join(c.lines) for c in cues)) <= 0.25
        previous_end = 0.0
        for cue in cues:
            assert previous_end <= cue.start < cue.end <= duration + 0.001
            assert cue.end - cue.start <= MAX_DURATION
            assert 1 <= len(cue.lines) <= MAX_LINES
            assert all(len(line) <= MAX_CHARS for line in cue.lines)
            previous_end = cue.end

    transcript = json.loads((out / "transcript.json").read_text())
    assert transcript["language"] == "en"
    words = [w for s in transcript["segments"] for w in s["words"]]
    assert word_error_rate(SPOKEN, " ".join(w["word"] for w in words)) <= 0.25
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start"] <= w["end"] <= duration + 0.5 for w in words)

    # The master lists the subtitles rendition and every variant refers to it.
    master = (out / "hls" / "master.m3u8").read_text()
    media_lines = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:")]
    assert media_lines == [
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",'
        'DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="subs_en.m3u8"'
    ]
    variants = [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(variants) == 2 and all(v.endswith(',SUBTITLES="subs"') for v in variants)
    assert result.hls_subtitles == "hls/subs_en.m3u8"
    playlist = (out / "hls" / "subs_en.m3u8").read_text().splitlines()
    assert playlist[0] == "#EXTM3U" and playlist[-1] == "#EXT-X-ENDLIST"
    assert "subs_en.vtt" in playlist
    hls_vtt = (out / "hls" / "subs_en.vtt").read_text()
    # ffmpeg's MPEG-TS segments start near 1.4 s, not 0: the map tells the player.
    mapping = re.fullmatch(
        r"X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00.000", hls_vtt.split("\n")[1]
    )
    assert mapping and 1.3 * 90_000 <= int(mapping[1]) <= 1.6 * 90_000
    assert parse_vtt(hls_vtt) == parse_vtt((out / result.vtt).read_text())


def test_long_audio_in_windows_loses_and_repeats_nothing(tmp_path: Path) -> None:
    # 48 s of speech in 15 s windows: the words at every seam must be neither
    # lost nor doubled, and progress comes window by window.
    wav = speech_wav(tmp_path / "lecture.wav", LECTURE)
    progress: list[float] = []
    out = tmp_path / "out"
    result = transcribe_media(wav, out, "EN-us", None, progress.append, window_seconds=15)

    assert result is not None and result.language == "en"
    text = (out / "transcript.txt").read_text()
    assert word_error_rate(LECTURE, text) <= 0.25, text
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 100.0
    assert 0 < progress[0] < 50
    transcript = json.loads((out / "transcript.json").read_text())
    words = [w for s in transcript["segments"] for w in s["words"]]
    assert all(a["end"] <= b["start"] + 0.01 for a, b in zip(words, words[1:], strict=False))
    assert words[-1]["end"] > 40
    assert not (out / "hls").exists()  # no master, no rendition


@pytest.mark.parametrize(
    "audio",
    [
        ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"],  # digital silence
        ["-f", "lavfi", "-i", "anoisesrc=c=pink:a=0.02"],  # room noise, no speech
    ],
    ids=["silence", "noise"],
)
def test_media_without_speech_gets_nothing(audio: list[str], tmp_path: Path) -> None:
    clip = video_with_audio(tmp_path / "quiet.mp4", audio, 4)
    out = tmp_path / "out"
    assert transcribe_media(clip, out, None, None, lambda p: None) is None
    assert not out.exists()


def test_video_without_audio_stream_gets_nothing(tmp_path: Path) -> None:
    clip = video_without_audio(tmp_path / "mute.mp4")
    out = tmp_path / "out"
    assert transcribe_media(clip, out, None, None, lambda p: None) is None
    assert not out.exists()


def test_jobs_transcribing_side_by_side_load_the_model_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Dramatiq threads transcribe at the same time: one model in memory for all of
    # them, loaded once (the log says when). Named by its path, which nothing else
    # asks for: a model this process has not loaded yet.
    caplog.set_level(logging.INFO, logger="processors.speech")
    model = str(default_model_path())
    with ThreadPoolExecutor(4) as pool:
        engines = list(pool.map(lambda _: get_engine(model, 1), range(4)))
    loaded = [r for r in caplog.records if r.getMessage() == "transcribe.model_loaded"]
    assert len(loaded) == 1
    assert all(engine.name == model for engine in engines)
    get_engine(model, 1)  # a later job
    assert len([r for r in caplog.records if r.getMessage() == "transcribe.model_loaded"]) == 1


MASTER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,SUBTITLES="old"
v0.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720
v1.m3u8
"""


def test_master_playlist_gets_one_rendition_per_language() -> None:
    once = with_subtitles(MASTER, "en", "subs_en.m3u8")
    twice = with_subtitles(once, "en", "subs_en.m3u8")
    assert twice == once
    lines = once.splitlines()
    assert lines[2].startswith('#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",')
    assert lines[3] == '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,SUBTITLES="subs"'
    assert lines[5] == '#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720,SUBTITLES="subs"'
    both = with_subtitles(once, "de", "subs_de.m3u8")
    assert sum(line.startswith("#EXT-X-MEDIA:") for line in both.splitlines()) == 2


def words_at(*spans: tuple[float, float, str]) -> list[Word]:
    return [Word(a, b, t) for a, b, t in spans]


def test_window_seams_fall_into_pauses_between_words() -> None:
    rate, length, guard = 16_000, 10 * 16_000, 16_000  # a 10 s window, 1 s guard
    first = Segment(
        0.5, 6.0, "one two three", words_at((0.5, 1, "one"), (1, 5.5, "two"), (5.5, 6, "three"))
    )
    # A 0.8 s pause at 6.0-6.8, then speech that runs into the window's end.
    second = Segment(
        6.8,
        10.0,
        "four five six",
        words_at((6.8, 7.5, "four"), (7.5, 8.8, "five"), (8.8, 10, "six")),
    )

    kept, cut = _seam([first, second], length, guard)
    assert kept == [first] and cut == int(6.4 * rate)  # mid-pause, "four" read again

    # No pause: the latest word boundary clear of the guard, splitting the segment.
    joined = Segment(
        0.5,
        10.0,
        "one two three four five six",
        words_at(
            (0.5, 1, "one"),
            (1, 5.5, "two"),
            (5.5, 6, "three"),
            (6, 7.5, "four"),
            (7.5, 8.8, "five"),
            (8.8, 10, "six"),
        ),
    )
    kept, cut = _seam([joined], length, guard)
    assert [w.text for w in kept[0].words] == ["one", "two", "three", "four", "five"]
    assert kept[0].text == "one two three four five" and cut == int(8.8 * rate)

    # Speech that ended before the guard: keep all, read only the guard again.
    assert _seam([first], length, guard) == ([first], length - guard)
    assert _seam([], length, guard) == ([], length - guard)

    # An engine without word times: the last segment is read again when that
    # leaves progress, else everything is kept.
    late = Segment(6.8, 10.0, "four five six")
    assert _seam([Segment(0.5, 6.0, "one two three"), late], length, guard)[1] == int(6.8 * rate)
    assert _seam([Segment(0.5, 10.0, "all of it")], length, guard)[1] == length
