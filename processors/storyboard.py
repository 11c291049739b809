"""A storyboard: thumbnails on one sprite sheet, and a WebVTT file that maps times to them.

Players show the thumbnail under the pointer while a viewer scrubs (as Mux's
storyboards do): each cue of `storyboard.vtt` spans one interval of the media
and names a tile of `storyboard.jpg` with a media fragment, `#xywh=x,y,w,h`.

The thumbnails come from the smallest rung, not the upload: it is already
small, already checked, and has a keyframe at the start of every segment, so
with `-skip_frame nokey` ffmpeg decodes only those keyframes, and an interval
that is a whole number of segments lands exactly on them. At most MAX_TILES
tiles, so the sheet stays one image of a modest size for any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .captions import timestamp
from .transcode import SEGMENT_SECONDS, own_hls_input

SPRITE = "storyboard.jpg"
VTT = "storyboard.vtt"
TILE_WIDTH = 160
COLUMNS = 10
MAX_TILES = 100


@dataclass(frozen=True)
class Storyboard:
    interval: int  # seconds of media per tile
    tiles: int
    tile_width: int
    tile_height: int

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.tiles / COLUMNS))

    @property
    def columns(self) -> int:
        return min(COLUMNS, self.tiles)


def plan(duration: float, width: int, height: int) -> Storyboard:
    """Tiles every whole number of segments, at most MAX_TILES of them."""
    segments = max(1, math.ceil(duration / SEGMENT_SECONDS / MAX_TILES))
    interval = segments * SEGMENT_SECONDS
    tiles = max(1, math.ceil(duration / interval))
    tile_height = max(2, round(TILE_WIDTH * height / width / 2) * 2)
    return Storyboard(interval, tiles, TILE_WIDTH, tile_height)


def sprite_args(rung_playlist: Path, out_dir: Path, board: Storyboard) -> list[str]:
    """ffmpeg arguments for the sprite sheet, read from one of our own rung playlists."""
    picture = own_hls_input(rung_playlist, skip_frame="nokey").video
    every = board.interval // SEGMENT_SECONDS
    if every > 1:
        # Keyframes only are decoded, one a segment: keep every `every`-th. (The fps
        # filter would do it by time, but drops the last frame of a short clip.)
        picture = picture.filter("select", f"not(mod(n,{every}))")
    picture = picture.filter("scale", board.tile_width, board.tile_height).filter(
        "tile", f"{board.columns}x{board.rows}"
    )
    output = picture.output(str(out_dir / SPRITE), vframes=1, **{"q:v": 5})
    return list(output.get_args())


def vtt(board: Storyboard, duration: float, sprite: str = SPRITE) -> str:
    """The cues, one per tile; the sprite named relative to the VTT file itself."""
    lines = ["WEBVTT", ""]
    w, h = board.tile_width, board.tile_height
    for k in range(board.tiles):
        start = k * board.interval
        end = min((k + 1) * board.interval, duration)
        if end <= start:
            break
        x, y = (k % COLUMNS) * w, (k // COLUMNS) * h
        lines += [
            f"{timestamp(start, '.')} --> {timestamp(end, '.')}",
            f"{sprite}#xywh={x},{y},{w},{h}",
            "",
        ]
    return "\n".join(lines)
