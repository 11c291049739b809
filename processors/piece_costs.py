"""The job's pieces as `progress` plans them, each with its prior cost.

A prior is only the start of an estimate (see `processors.progress`): each
lane's measured speed replaces it as soon as it has one.
"""

from __future__ import annotations

from .content import STATIC_FPS
from .probe import MediaInfo
from .progress import SPEECH, Piece
from .transcode import (
    LADDER_PRESET,
    PLAYABLE_PRESET,
    STATIC_PRESET,
    Rendition,
    first_preset,
    ladder_preset,
)

# Prior cost of each piece, in seconds per second of media at 1280x720 and
# 30 fps on one core of a small machine; encoding at LADDER_PRESET.
ENCODE_COST_720P = 0.12
# Encoding at each x264 preset the ladder uses, as a share of LADDER_PRESET's CPU,
# so that each run is costed at the preset it runs (a slide lecture is ultrafast in
# every rung, not veryfast). The ratios come from one-thread encodes of the content
# that uses each preset: on moving pictures superfast takes about 0.6 of veryfast's
# encoding time, at 720p and 360p alike; on slides (10 fps, still-image tuning, the
# only content encoded ultrafast) ultrafast takes about half of veryfast's.
PRESET_ENCODE_COST = {LADDER_PRESET: 1.0, PLAYABLE_PRESET: 0.6, STATIC_PRESET: 0.5}
DECODE_COST = 0.04
SPEECH_COST = 0.15
SMALL_COST = 0.005
FULL_FRAME = 1280 * 720


def plan_pieces(media: MediaInfo, ladder: list[Rendition], speech: bool) -> list[Piece]:
    seconds = media.duration or 1.0
    pieces: list[Piece] = []
    if media.kind == "audio":
        pieces.append(Piece("audio", "transcode", seconds * DECODE_COST))
    else:
        # Slides are encoded at STATIC_FPS: a third of the frames, less than a third the work.
        rate = STATIC_FPS / 30 if media.static else 1.0
        low = len(ladder) - 1
        for index in reversed(range(len(ladder))):
            rung = ladder[index]
            share = rate * rung.width * rung.height / FULL_FRAME
            # The first rung is a run of its own; the larger rungs share one decode
            # (`encoder_pieces.larger_rungs`). Each run encodes at its own preset.
            if index == low:
                decode, preset = DECODE_COST, first_preset(media)
            else:
                decode, preset = DECODE_COST / low, ladder_preset(media)
            encode = ENCODE_COST_720P * PRESET_ENCODE_COST[preset] * share
            pieces.append(Piece(f"rung{index}", "transcode", seconds * (decode + encode)))
        pieces += [
            Piece("poster", "transcode", 1.0),
            Piece("storyboard", "transcode", seconds * SMALL_COST),
            Piece("mp4", "transcode", seconds * SMALL_COST),
        ]
    if speech:
        pieces.append(Piece("transcript", "transcribe", seconds * SPEECH_COST, lane=SPEECH))
    return pieces
