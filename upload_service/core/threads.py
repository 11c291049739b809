"""Blocking calls off the event loop: anyio's worker threads, in named pools.

A pool is a `CapacityLimiter` over anyio's threads, so that one kind of call
never holds every thread another kind waits for: with one limiter, a burst of
a hundred uploads put its status writes and body writes ahead of every HEAD.
Every pool is named and sized here, and nowhere else.

Like anyio's default, a call is never abandoned: a cancelled caller waits for
its thread to finish, then sees the cancellation, so a file is never left
half-written behind a request that went away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

POOLS = {
    # Local files, status records, synchronous Redis, Dramatiq messages.
    "blocking": 32,
    # Short reads a request waits on (a HEAD's upload record, a status file):
    # never queued behind the writes of a burst of uploads.
    "read": 8,
    # Request bodies going to disk, a batch at a time.
    "write": 8,
    # Calls to another service (B2) that may take seconds: a slow remote never
    # holds the threads local work runs on.
    "remote": 40,
}

# A limiter belongs to one event loop (tests run many): one per pool and loop.
_limiters: dict[str, RunVar[anyio.CapacityLimiter]] = {
    name: RunVar(f"upload_service.pool.{name}") for name in POOLS
}


def limiter(pool: str) -> anyio.CapacityLimiter:
    """The named pool's limiter on the running event loop."""
    var = _limiters[pool]
    try:
        return var.get()
    except LookupError:
        made = anyio.CapacityLimiter(POOLS[pool])
        var.set(made)
        return made


async def run_in(pool: str, func: Callable[[*Ts], T], *args: *Ts) -> T:
    """Run `func(*args)` in a thread of `pool`; a cancelled caller still waits for it."""
    return await anyio.to_thread.run_sync(func, *args, limiter=limiter(pool))


async def run_blocking(func: Callable[[*Ts], T], *args: *Ts) -> T:
    return await run_in("blocking", func, *args)


async def run_read(func: Callable[[*Ts], T], *args: *Ts) -> T:
    return await run_in("read", func, *args)


async def run_write(func: Callable[[*Ts], T], *args: *Ts) -> T:
    return await run_in("write", func, *args)


async def run_remote(func: Callable[[*Ts], T], *args: *Ts) -> T:
    return await run_in("remote", func, *args)
