"""A job's scratch directory: `<work_dir>/<upload id>`, gone when the job ends.

The directory is named by the upload, not by the attempt. With `resume`, what
an attempt that died (SIGKILLed, or failed for a reason a retry may not meet)
left is kept for the next attempt when it holds a checkpoint
(`processors.checkpoint`): the finished pieces are not made again. Without a
checkpoint the redo wipes it first. A job that ends (done, failed for good,
stopped) removes it; `sweep_stale` removes what no attempt came back for.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from upload_service.core.ids import safe_child

from .checkpoint import MANIFEST


@contextmanager
def job_dir(work_root: Path, upload_id: str, resume: bool = False) -> Iterator[Path]:
    """The job's dir; with `resume`, kept when the job raises, for its retry."""
    path = safe_child(work_root, upload_id)  # it is wiped: never anything but the job's own
    if not (resume and (path / MANIFEST).is_file()):
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if not resume:
            shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)


def remove_job_dir(work_root: Path, upload_id: str) -> None:
    """The upload's job dir, gone: for a run that finds nothing to do (the upload
    settled or vanished) after an attempt that was killed with its dir in place."""
    shutil.rmtree(safe_child(work_root, upload_id), ignore_errors=True)


def sweep_stale(work_root: Path, older_than: float) -> list[str]:
    """Remove job dirs untouched for `older_than` seconds: uploads never redone.

    Run at worker start. The age must exceed any job's time limit, so that
    another worker's job in progress is never touched.
    """
    removed = []
    cutoff = time.time() - older_than
    for path in work_root.glob("*"):
        try:
            stale = path.is_dir() and path.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
