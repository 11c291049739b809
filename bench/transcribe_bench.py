"""Real-time factor of transcription on this machine, beside faster-whisper's own path.

    .venv/bin/python bench/transcribe_bench.py [--seconds 180] [--model PATH_OR_NAME]

Makes a video of espeak-ng speech (lavfi picture) about `--seconds` long, then runs,
each in a fresh process so that peak memory is its own:
  ours  processors.transcribe.transcribe_media (ffmpeg pipe, 60 s windows, all outputs)
  peer  WhisperModel.transcribe(path) (whole-file decode), the same options
and prints the real-time factor (processing time / media duration, model load
excluded and shown apart), peak RSS and the ratios ours/peer.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARAGRAPH = (
    "Welcome back to the course. In this lesson we look at how large files reach the server. "
    "The browser sends the video in small pieces, and each piece is written to disk as it "
    "arrives. When the last piece is stored, a worker picks up the job, makes several "
    "versions for different screens, and writes captions so that every student can follow "
    "along. If the connection drops, the upload resumes where it stopped. "
)


def spoken_text(seconds: float) -> str:
    words = PARAGRAPH.split(" ")
    return " ".join(words[i % len(words)] for i in range(int(seconds * 2)))  # 120 words/min


def word_error_rate(reference: str, hypothesis: str) -> float:
    def norm(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()

    ref, hyp = norm(reference), norm(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(len(ref), 1)


def make_media(directory: Path, seconds: float) -> Path:
    text = spoken_text(seconds)
    wav = directory / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us+f2", "-s", "120", "-w", str(wav), text],
        check=True,
    )
    clip = directory / "speech.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=320x180:rate=15", "-i", str(wav),
            "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(clip),
        ],
        check=True,
    )  # fmt: skip
    return clip


def run_one(kind: str, clip: str, model: str | None, out_dir: str) -> dict[str, object]:
    from processors.speech import get_engine

    t0 = time.perf_counter()
    engine = get_engine(model)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    if kind == "ours":
        from processors.transcribe import transcribe_media

        result = transcribe_media(Path(clip), Path(out_dir), None, model, lambda p: None)
        assert result is not None and result.duration
        duration, words = result.duration, result.words
        text = (Path(out_dir) / result.text).read_text()
    else:
        from faster_whisper import WhisperModel

        # The same model object our engine loaded: same weights, same threads.
        whisper: WhisperModel = engine._model  # type: ignore[attr-defined]
        segments, info = whisper.transcribe(
            clip,
            word_timestamps=True,
            vad_filter=True,
            beam_size=5,
            condition_on_previous_text=False,
        )
        segments = list(segments)
        words = sum(len(s.words or []) for s in segments)
        text = " ".join(s.text for s in segments)
        duration = info.duration
    elapsed = time.perf_counter() - t1
    return {
        "load": load,
        "elapsed": elapsed,
        "duration": duration,
        "rtf": elapsed / duration,
        "words": words,
        "text": text,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--_child", nargs=3, metavar=("KIND", "CLIP", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args._child:
        kind, clip, out = args._child
        print(json.dumps(run_one(kind, clip, args.model, out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_media(Path(tmp), args.seconds)
        results: dict[str, dict[str, Any]] = {}
        for kind in ("ours", "peer"):
            command = [sys.executable, __file__, "--_child", kind, str(clip), f"{tmp}/out"]
            if args.model:
                command += ["--model", args.model]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    for kind, r in results.items():
        print(
            f"{kind}: {r['duration']:.1f} s of media in {r['elapsed']:.2f} s -> "
            f"RTF {r['rtf']:.3f} (model load {r['load']:.2f} s), {r['words']} words, "
            f"WER {word_error_rate(spoken_text(args.seconds), r['text']):.1%}, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    ours, peer = results["ours"], results["peer"]
    print(
        f"ours/peer: time {ours['elapsed'] / peer['elapsed']:.2f}x, "
        f"peak RSS {ours['peak_rss_mb'] / peer['peak_rss_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
