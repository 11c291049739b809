"""The job's own local copy of the upload's bytes, from whatever store holds them.

A store with local files (the disk) hands over its path; any other (B2) is
streamed into the job's work dir first, and that copy is what gets probed and
transcoded. The original itself is never published: it stays in the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.from_thread import start_blocking_portal

from upload_service.core.logs import log_event
from upload_service.core.store.base import UploadGone, UploadInfo, UploadNotFound, UploadStore

log = logging.getLogger("processors.source")
T = TypeVar("T")


def run_async(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Call an async store method from this sync code.

    On an event loop of its own thread: a Dramatiq worker thread has no loop,
    but a caller that runs one (tests do) would make `anyio.run` refuse.
    """
    with start_blocking_portal() as portal:
        return portal.call(func, *args)


def load_upload(store: UploadStore, upload_id: str) -> UploadInfo | None:
    """The upload's info; None when it is unknown, terminated or expired."""
    try:
        return run_async(store.get, upload_id)
    except (UploadNotFound, UploadGone):
        return None


async def _copy_range(store: UploadStore, upload_id: str, size: int, target: Path) -> int:
    written = 0
    async with await anyio.open_file(target, "wb") as f:
        async for block in store.open_range(upload_id, 0, size):
            await f.write(block)
            written += len(block)
    return written


def fetch_source(store: UploadStore, info: UploadInfo, work: Path) -> Path:
    """A local file with the upload's bytes: the store's own, or a copy in `work`."""
    local = store.path(info.id)
    if local is not None:
        return Path(local)
    target = work / "source"
    started = time.monotonic()
    written = run_async(_copy_range, store, info.id, info.offset, target)
    if written != info.offset:  # a cut-short download: transient, Dramatiq retries
        raise OSError(f"upload {info.id}: fetched {written} of {info.offset} bytes")
    log_event(
        log,
        "pipeline.source_fetched",
        upload_id=info.id,
        bytes=written,
        seconds=round(time.monotonic() - started, 2),
    )
    return target
