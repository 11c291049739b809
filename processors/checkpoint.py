"""What a job has finished, kept in its work dir so that a redo skips it.

A job makes its outputs in pieces (each rung of the ladder, the poster, the
storyboard, the MP4, the transcript). Each finished piece is recorded in
`<work dir>/manifest.json`, written to a temp name and renamed, so the file
always holds a whole list: a worker SIGKILLed at 80 % leaves the pieces it
finished, and the redelivered job starts from the next one. A piece that was
being made when the worker died is not listed, so it is made again from
scratch (its folder wiped first).

`runs` counts how many times each piece was made, over every attempt: one for
every piece of a job that never crashed, and the proof that a redo did not
make a finished piece again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# A manifest from another layout of the pieces is not trusted: the job starts over.
VERSION = 1


class Checkpoint:
    def __init__(self, work: Path) -> None:
        self.path = Path(work) / MANIFEST
        # The transcript's thread records its piece beside the encoder's.
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"version": VERSION, "pieces": {}, "runs": {}}
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            loaded = None
        if isinstance(loaded, dict) and loaded.get("version") == VERSION:
            self.data.update(loaded)
        # Pieces made by an earlier attempt: this one goes on from them.
        self.resumed = bool(self.data["pieces"])

    def done(self, piece: str) -> bool:
        return piece in self.data["pieces"]

    def get(self, piece: str) -> Any:
        return self.data["pieces"].get(piece)

    def started(self, piece: str) -> None:
        """Count a run of `piece` (before it runs: a run killed midway counts too)."""
        with self.lock:
            runs = self.data["runs"]
            runs[piece] = runs.get(piece, 0) + 1
            self._save()

    def finish(self, piece: str, value: Any = True) -> None:
        with self.lock:
            self.data["pieces"][piece] = value
            self._save()

    def runs(self, piece: str) -> int:
        return int(self.data["runs"].get(piece, 0))

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
