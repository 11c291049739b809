"""One progress figure for the whole job, with an estimate of the time left.

The job's pieces (each rung, the poster, the storyboard, the MP4, the
transcript, the publishing) are known once the media is probed, each with a
prior cost in seconds (`PieceCost`: from its kind, pixels and the media's
length). `percent` is the share of that prior cost done. The time left is
measured, not guessed: each lane (the encoder's pieces run one after another;
the transcript beside them) divides its own elapsed time by the prior cost it
has done, and applies that speed to what it has left; the job is done when its
slowest lane is. Until a lane has done a little, its prior stands in.

Status writes go through `JobStatus`, one lock for the job: the transcript's
thread and the encoder's write the same record, and a read-modify-write of one
must never lose the other's change. Progress is written about once a second
(`processors.ffmpeg_run.Throttle` does the same for a single stage).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from upload_service.core.status import Record, StatusStore

ENCODE = "encode"
SPEECH = "speech"
# A lane's speed is measured once it has done this share of its prior cost.
MEASURE_AFTER = 0.02


@dataclass
class Piece:
    name: str
    stage: str  # the status's progress.stage while it runs
    cost: float  # prior seconds
    lane: str = ENCODE
    done: float = 0.0  # 0..1


@dataclass
class Lane:
    started: float | None = None
    finished: bool = False
    pieces: list[Piece] = field(default_factory=list)

    def prior(self) -> float:
        return sum(p.cost for p in self.pieces)

    def prior_done(self) -> float:
        return sum(p.cost * p.done for p in self.pieces)

    def seconds_left(self, now: float) -> float:
        left = self.prior() - self.prior_done()
        if self.finished or left <= 0:
            return 0.0
        done = self.prior_done()
        if self.started is None or done < MEASURE_AFTER * self.prior():
            return left
        return left * (now - self.started) / done


class JobStatus:
    """The job's status writes, serialised, with the progress figure in each."""

    def __init__(
        self,
        status: StatusStore,
        upload_id: str,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.status = status
        self.upload_id = upload_id
        self.interval = interval
        self.clock = clock
        self.lock = threading.RLock()
        self.pieces: dict[str, Piece] = {}
        self.lanes: dict[str, Lane] = {}
        self.stage = "probe"
        self._written: float | None = None

    # -- the plan ------------------------------------------------------------
    def plan(self, pieces: list[Piece]) -> None:
        with self.lock:
            for piece in pieces:
                self.pieces[piece.name] = piece
                self.lanes.setdefault(piece.lane, Lane()).pieces.append(piece)

    def skip(self, name: str) -> None:
        """A piece already made (a resumed job): done, and no part of any speed."""
        with self.lock:
            piece = self.pieces.get(name)
            if piece is not None:
                self.lanes[piece.lane].pieces.remove(piece)
                piece.done = 1.0

    # -- reports ---------------------------------------------------------------
    def piece(self, name: str) -> Callable[[float], None]:
        """The progress callback (percent of the piece) for `name`; starts it now."""
        with self.lock:
            piece = self.pieces[name]
            lane = self.lanes[piece.lane]
            if lane.started is None:
                lane.started = self.clock()
            if piece.lane == ENCODE:
                self.stage = piece.stage
        self.report(name, 0.0)
        return lambda percent: self.report(name, percent)

    def report(self, name: str, percent: float) -> None:
        with self.lock:
            piece = self.pieces[name]
            piece.done = max(piece.done, min(1.0, percent / 100.0))
            now = self.clock()
            if self._written is not None and now - self._written < self.interval:
                return
            self._write_locked({})

    def set_stage(self, stage: str) -> None:
        with self.lock:
            self.stage = stage

    def finish_lane(self, lane: str) -> None:
        with self.lock:
            if lane in self.lanes:
                self.lanes[lane].finished = True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            total = sum(p.cost for p in self.pieces.values()) or 1.0
            done = sum(p.cost * p.done for p in self.pieces.values())
            now = self.clock()
            left = max((lane.seconds_left(now) for lane in self.lanes.values()), default=0.0)
            return {
                "stage": self.stage,
                "percent": round(min(100.0, 100.0 * done / total), 1),
                "eta_s": round(left),
            }

    # -- writes ---------------------------------------------------------------
    def write(self, **changes: Any) -> Record:
        """A status write (state, outputs, ...) with the progress figure as it is now."""
        with self.lock:
            return self._write_locked(changes)

    def _write_locked(self, changes: dict[str, Any]) -> Record:
        # advance, not update: raises UploadEnded once the upload was deleted, and
        # progress is written about once a second, so a DELETE stops the job in a tick.
        progress = changes.pop("progress", None) or self.snapshot()
        self._written = self.clock()
        return self.status.advance(self.upload_id, progress=progress, **changes)
