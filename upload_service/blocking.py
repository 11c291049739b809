"""Blocking calls off the event loop, with less machinery than `anyio.to_thread`.

Profiling 100 concurrent uploads showed anyio's per-call bookkeeping (cancel
scopes, run vars, the capacity limiter) at a fifth of the event loop's busy
time; a plain executor makes the same hop for much less (event-loop CPU for
100 uploads: 0.47 -> 0.37 s). Like anyio's default, a call is never abandoned:
a cancelled caller waits for its thread to finish, then sees the cancellation,
so a file is never left half-written behind a request that went away.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# As many as anyio's default: enough that slow disks don't queue the small reads.
THREADS = 40

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:  # per process: made on first use, after any fork
            _executor = concurrent.futures.ThreadPoolExecutor(THREADS, "blocking")
        return _executor


async def run_blocking(func: Callable[[*Ts], T], *args: *Ts) -> T:
    done = asyncio.get_running_loop().run_in_executor(_pool(), func, *args)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(done)
        raise
