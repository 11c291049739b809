"""Blocking calls off the event loop, with less machinery than `anyio.to_thread`.

Under many concurrent uploads, anyio's per-call bookkeeping (cancel scopes, run
vars, the capacity limiter) took a large share of the event loop's busy time; a
plain executor makes the same hop for much less (figures: docs/performance.md).
Like anyio's default, a call is never abandoned: a cancelled caller waits for
its thread to finish, then sees the cancellation, so a file is never left
half-written behind a request that went away.
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

# Two pools, so that the small reads a HEAD or a poll waits on never queue behind
# the writes of a burst of uploads (status records, Redis, Dramatiq messages):
# with one pool, 100 uploads arriving at once put their hooks ahead of every HEAD.
THREADS = 32
READ_THREADS = 8
REMOTE_THREADS = 8

_pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _pool(name: str, threads: int) -> concurrent.futures.ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(name)
        if pool is None:  # per process: made on first use, after any fork
            pool = _pools[name] = concurrent.futures.ThreadPoolExecutor(threads, name)
        return pool


async def run_blocking(func: Callable[[*Ts], T], *args: *Ts) -> T:
    """Run `func(*args)` in a worker thread; a cancelled caller still waits for it."""
    return await _run(_pool("blocking", THREADS), func, *args)


async def run_read(func: Callable[[*Ts], T], *args: *Ts) -> T:
    """Like run_blocking, for short reads a request waits on (a HEAD's upload record)."""
    return await _run(_pool("blocking-read", READ_THREADS), func, *args)


async def run_remote(func: Callable[[*Ts], T], *args: *Ts) -> T:
    """Like run_blocking, for calls to another service (B2) that may take seconds: a pool
    of their own, so that a slow remote never holds the threads uploads write with."""
    return await _run(_pool("remote", REMOTE_THREADS), func, *args)


async def _run(
    pool: concurrent.futures.ThreadPoolExecutor, func: Callable[[*Ts], T], *args: *Ts
) -> T:
    done = asyncio.get_running_loop().run_in_executor(pool, func, *args)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(done)
        raise
