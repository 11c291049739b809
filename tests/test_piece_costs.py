"""The ETA's priors (`processors.piece_costs`): each ffmpeg run of the ladder costed at
the x264 preset it runs, so a slide lecture (ultrafast in every rung) starts with an
ETA below that of moving pictures (superfast, then veryfast) by those presets' ratio."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from processors.content import STATIC_FPS
from processors.piece_costs import DECODE_COST, PRESET_ENCODE_COST, plan_pieces
from processors.probe import MediaInfo
from processors.progress import JobStatus
from processors.transcode import (
    LADDER_PRESET,
    PLAYABLE_PRESET,
    STATIC_PRESET,
    choose_ladder,
    first_preset,
    ladder_preset,
)
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store.base import UploadInfo

MOVING = MediaInfo(kind="video", duration=600.0, width=1280, height=720, has_audio=True, fps=30)
SLIDES = replace(MOVING, static=True)
LADDER = choose_ladder(1280, 720)  # 720p, 480p, 360p: the first run makes the last
LOW = len(LADDER) - 1


def encoding(media: MediaInfo) -> dict[int, float]:
    """Each rung's prior less its part of its run's decode: what its encoder costs, per
    pixel of the rung (the smallest rung decodes alone, the others share a decode)."""
    seconds = media.duration or 0.0
    costs = {p.name: p.cost for p in plan_pieces(media, LADDER, speech=False)}
    found = {}
    for index, rung in enumerate(LADDER):
        decode = DECODE_COST if index == LOW else DECODE_COST / LOW
        found[index] = (costs[f"rung{index}"] - seconds * decode) / (rung.width * rung.height)
    return found


def first_eta(media: MediaInfo, tmp_path: Path) -> int:
    """The ETA a job of `media` says before it has measured anything."""
    status = StatusStore(tmp_path / "status", None)
    status.put(new_record(UploadInfo("up1", "u", 10, 10, {})))
    job = JobStatus(status, "up1", interval=0.0)
    job.plan(plan_pieces(media, LADDER, speech=False))
    return int(job.snapshot()["eta_s"])


def test_each_run_uses_a_preset_the_priors_cost() -> None:
    assert (first_preset(MOVING), ladder_preset(MOVING)) == (PLAYABLE_PRESET, LADDER_PRESET)
    assert (first_preset(SLIDES), ladder_preset(SLIDES)) == (STATIC_PRESET, STATIC_PRESET)
    assert PRESET_ENCODE_COST[LADDER_PRESET] == 1.0
    assert PRESET_ENCODE_COST[STATIC_PRESET] < PRESET_ENCODE_COST[PLAYABLE_PRESET] < 1.0


def test_the_first_rung_of_moving_pictures_is_costed_at_its_quicker_preset() -> None:
    per_pixel = encoding(MOVING)
    # The larger rungs' one run is veryfast: the same cost per pixel in each.
    assert per_pixel[0] == pytest.approx(per_pixel[1])
    assert per_pixel[LOW] < 0.9 * per_pixel[0]
    assert per_pixel[LOW] == pytest.approx(per_pixel[0] * PRESET_ENCODE_COST[PLAYABLE_PRESET])


def test_slides_are_costed_at_ultrafast_in_every_rung_and_start_with_a_lower_eta(
    tmp_path: Path,
) -> None:
    moving, slides = encoding(MOVING), encoding(SLIDES)
    frames = STATIC_FPS / 30  # slides are encoded at STATIC_FPS
    for index in range(len(LADDER)):
        # Cheaper than the frame rate alone makes them: a quicker preset too.
        assert slides[index] < 0.9 * moving[index] * frames
        preset = PLAYABLE_PRESET if index == LOW else LADDER_PRESET
        factor = PRESET_ENCODE_COST[STATIC_PRESET] / PRESET_ENCODE_COST[preset]
        assert slides[index] == pytest.approx(moving[index] * frames * factor)
    # The ETA before any measurement is lower by that much encoding, and nothing else:
    # seconds more than the frame rate alone would save.
    saved = sum((moving[i] - slides[i]) * rung.width * rung.height for i, rung in enumerate(LADDER))
    by_frames = sum(moving[i] * (1 - frames) * r.width * r.height for i, r in enumerate(LADDER))
    assert saved > by_frames + 5
    assert first_eta(MOVING, tmp_path / "moving") - first_eta(SLIDES, tmp_path / "slides") == (
        pytest.approx(saved, abs=1)
    )
