"""A job's scratch directory: `<work_dir>/<upload id>`, gone when the job ends.

The directory is named by the upload, not by the attempt, so an attempt that
was SIGKILLed (no `finally` ran) leaves nothing behind for long: the redo of
the same upload wipes it first.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def job_dir(work_root: Path, upload_id: str) -> Iterator[Path]:
    path = work_root / upload_id
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
