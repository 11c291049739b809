"""One contract, every Locker: MemoryLocker, and RedisLocker (real Redis) on each client
that can carry its commands: redis-py's asyncio client (the stock path) and the fast
path's wire client.

Redis alone also promises what only a shared lock can: a dead holder's lock is
taken over at once (its connection is gone) and otherwise expires after its TTL,
a live holder's lock is renewed for as long as it holds it, and a holder never
releases a lock that has passed to someone else.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import anyio
import anyio.to_thread
import pytest
from conftest import RedisServer
from redis.asyncio import Redis

from upload_service.core.errors import Locked
from upload_service.core.locks import (
    Locker,
    LockKeys,
    MemoryLocker,
    RedisLocker,
    holder_client_id,
)
from upload_service.core.presence import Presence
from upload_service.core.redis_commands import RedisCommands
from upload_service.fastpath.redis_wire import RedisWire
from upload_service.fastpath.wire_commands import WireCommands

pytestmark = pytest.mark.anyio

CLIENTS = ["redis-py", "wire"]
Commands = RedisCommands | WireCommands


@pytest.fixture
async def aredis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client to look at (and tamper with) the keys the lockers hold."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def open_keys(kind: str, url: str) -> Commands:
    if kind == "wire":
        return WireCommands(RedisWire(url))
    return RedisCommands(Redis.from_url(url))


@pytest.fixture(params=CLIENTS)
async def keys(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Commands]:
    commands = open_keys(request.param, redis_server.url)
    yield commands
    await commands.aclose()


@pytest.fixture(params=["memory", *CLIENTS])
async def make_locker(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Callable[[], Locker]]:
    """Lockers that share their state, like two server processes sharing Redis."""
    if request.param == "memory":
        shared = MemoryLocker()
        yield lambda: shared
        return
    commands = open_keys(request.param, redis_server.url)
    prefix = f"test-lock-{secrets.token_hex(4)}:"
    yield lambda: RedisLocker(commands, ttl=5, prefix=prefix)
    await commands.aclose()


async def test_second_holder_is_refused(make_locker: Callable[[], Locker]) -> None:
    first, second = make_locker(), make_locker()
    async with first.lock("upload-a"):
        with pytest.raises(Locked):
            async with second.lock("upload-a"):
                pytest.fail("two holders at once")
        with pytest.raises(Locked):
            async with first.lock("upload-a"):
                pytest.fail("a lock is not reentrant")
        async with second.lock("upload-b"):  # other keys are independent
            pass


async def test_release_frees_the_lock(make_locker: Callable[[], Locker]) -> None:
    first, second = make_locker(), make_locker()
    async with first.lock("k"):
        pass
    async with second.lock("k"):
        pass
    with pytest.raises(RuntimeError):
        async with first.lock("k"):
            raise RuntimeError("the request failed")
    async with second.lock("k"):  # an error inside still releases
        pass


async def test_cancelled_holder_releases(make_locker: Callable[[], Locker]) -> None:
    locker = make_locker()
    entered = anyio.Event()

    async def hold() -> None:
        async with locker.lock("k"):
            entered.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await entered.wait()
        with pytest.raises(Locked):
            async with make_locker().lock("k"):
                pass
        tg.cancel_scope.cancel()
    async with make_locker().lock("k"):
        pass


async def test_the_error_is_423() -> None:
    assert Locked.status == 423 and Locked.code == "locked"


# -- Redis only --------------------------------------------------------------------------


async def test_both_clients_share_the_same_locks(redis_server: RedisServer) -> None:
    """A fast-path server and a stock process (the sweeper) exclude each other."""
    prefix = f"mixed-{secrets.token_hex(4)}:"
    wire = WireCommands(RedisWire(redis_server.url))
    stock = RedisCommands(Redis.from_url(redis_server.url))
    try:
        on_wire, on_stock = RedisLocker(wire, prefix=prefix), RedisLocker(stock, prefix=prefix)
        for holder, other in ((on_wire, on_stock), (on_stock, on_wire)):
            async with holder.lock("k"):
                with pytest.raises(Locked):
                    async with other.lock("k"):
                        pass
            async with other.lock("k"):  # released for the other client too
                pass
    finally:
        await wire.aclose()
        await stock.aclose()


DYING_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from redis.asyncio import Redis
    from upload_service.core.locks import RedisLocker
    from upload_service.core.presence import Presence
    from upload_service.core.redis_commands import RedisCommands
    from upload_service.fastpath.redis_wire import RedisWire
    from upload_service.fastpath.wire_commands import WireCommands

    async def main():
        url, key, ttl, kind, named = sys.argv[1:]
        if kind == "wire":
            keys = WireCommands(RedisWire(url))
        else:
            keys = RedisCommands(Redis.from_url(url))
        presence = Presence(url) if named == "named" else None
        locker = RedisLocker(keys, ttl=float(ttl), prefix="dead:", presence=presence)
        async with locker.lock(key):
            print("held", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def kill_a_holder(redis_url: str, key: str, kind: str, ttl: int = 1, named: bool = False) -> None:
    """A process takes the lock, then dies without releasing it. `named`: the lock
    names the holder's connection (as the server's do)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DYING_HOLDER,
            redis_url,
            key,
            str(ttl),
            kind,
            "named" if named else "anonymous",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("kind", CLIENTS)
async def test_dead_holders_lock_is_taken_over_at_once(
    redis_server: RedisServer, aredis: Redis, keys: LockKeys, kind: str
) -> None:
    key = secrets.token_hex(4)
    await anyio.to_thread.run_sync(kill_a_holder, redis_server.url, key, kind, 60, True)
    assert await aredis.pttl(f"dead:{key}") > 50_000  # a TTL far too long to wait out
    presence = Presence(redis_server.url)
    try:
        locker = RedisLocker(keys, ttl=60, prefix="dead:", presence=presence)
        async with locker.lock(key):
            held = await aredis.get(f"dead:{key}")
            assert held is not None
            assert holder_client_id(held) == await presence.client_id()
            # A live holder's lock is not taken: its connection is there.
            other = RedisLocker(keys, ttl=60, prefix="dead:", presence=Presence(redis_server.url))
            with pytest.raises(Locked) as refused:
                async with other.lock(key):
                    pass
            assert refused.value.headers["Retry-After"] == "1"
            assert other.presence is not None
            await other.presence.aclose()
    finally:
        await presence.aclose()


async def test_a_holder_whose_connection_changed_restamps_its_lock(
    redis_server: RedisServer, aredis: Redis, keys: LockKeys
) -> None:
    """Its presence connection dropped (the process lives): its next renewal names the
    new connection, so that no contender takes a live holder's lock."""
    prefix = f"restamp-{secrets.token_hex(4)}:"
    presence = Presence(redis_server.url, fresh_for=0)
    try:
        locker = RedisLocker(keys, ttl=0.6, prefix=prefix, presence=presence)
        async with locker.lock("k") as hold:
            before = await presence.client_id()
            await aredis.client_kill_filter(_id=before)
            await hold.confirm()
            after = await presence.client_id()
            assert after != before
            assert holder_client_id(await aredis.get(prefix + "k") or b"") == after
            other = RedisLocker(keys, ttl=0.6, prefix=prefix, presence=Presence(redis_server.url))
            with pytest.raises(Locked):
                async with other.lock("k"):
                    pass
    finally:
        await presence.aclose()


async def test_a_request_waits_out_a_brief_hold_of_its_own_process(keys: LockKeys) -> None:
    """A late status write holds an upload's lock for a moment; a PATCH of the same
    process arriving then waits for it instead of answering 423 (and its client
    retrying a second later). Another process is refused as by any holder."""
    prefix = f"brief-{secrets.token_hex(4)}:"
    locker, other_process = RedisLocker(keys, prefix=prefix), RedisLocker(keys, prefix=prefix)
    inside, leave, finished = anyio.Event(), anyio.Event(), anyio.Event()
    got: list[str] = []

    async def brief_write() -> None:
        async with locker.lock("up1", brief=True):
            inside.set()
            await leave.wait()

    async def request() -> None:
        try:
            async with locker.lock("up1"):
                got.append("request")
        finally:
            finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(brief_write)
        await inside.wait()
        with pytest.raises(Locked):
            async with other_process.lock("up1"):
                pass
        tg.start_soon(request)
        with anyio.move_on_after(0.5):  # a refusal would come at once
            await finished.wait()
        assert not finished.is_set()  # waiting: neither refused nor through
        leave.set()
    assert got == ["request"]


async def test_confirm_refuses_once_the_lock_passed_on(aredis: Redis, keys: LockKeys) -> None:
    prefix = f"confirm-{secrets.token_hex(4)}:"
    locker = RedisLocker(keys, ttl=5, prefix=prefix)
    async with locker.lock("k") as hold:
        await hold.confirm()
        await aredis.set(prefix + "k", "someone-else")
        with pytest.raises(Locked):
            await hold.confirm()


@pytest.mark.parametrize("kind", CLIENTS)
async def test_dead_holders_lock_expires_after_its_ttl(
    redis_server: RedisServer, aredis: Redis, keys: LockKeys, kind: str
) -> None:
    key = secrets.token_hex(4)
    await anyio.to_thread.run_sync(kill_a_holder, redis_server.url, key, kind)
    locker = RedisLocker(keys, ttl=1, prefix="dead:")
    # Dead, but its lock is still there, and names no connection: only the TTL frees it.
    ttl_ms = await aredis.pttl(f"dead:{key}")
    assert 0 < ttl_ms <= 1000
    with pytest.raises(Locked):
        async with locker.lock(key):
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            async with locker.lock(key):
                break
        except Locked:
            await anyio.sleep(0.05)
    else:
        pytest.fail("the dead holder's lock never expired")


async def test_renewal_keeps_a_long_hold_alive(aredis: Redis, keys: LockKeys) -> None:
    prefix = f"renew-{secrets.token_hex(4)}:"
    holder = RedisLocker(keys, ttl=0.3, prefix=prefix)
    other = RedisLocker(keys, ttl=0.3, prefix=prefix)
    async with holder.lock("k"):
        for _ in range(12):  # about 4 TTLs
            await anyio.sleep(0.1)
            assert await aredis.exists(prefix + "k")
            with pytest.raises(Locked):
                async with other.lock("k"):
                    pass
    assert not await aredis.exists(prefix + "k")
    async with other.lock("k"):
        pass


async def test_holder_never_releases_a_lock_it_lost(aredis: Redis, keys: LockKeys) -> None:
    prefix = f"lost-{secrets.token_hex(4)}:"
    first = RedisLocker(keys, ttl=5, prefix=prefix)
    second = RedisLocker(keys, ttl=5, prefix=prefix)
    async with AsyncExitStack() as stack:
        async with first.lock("k"):
            await aredis.delete(prefix + "k")  # as if first's TTL ran out during a stall
            await stack.enter_async_context(second.lock("k"))
        # first is done; second still holds the lock.
        assert await aredis.exists(prefix + "k")
        with pytest.raises(Locked):
            async with first.lock("k"):
                pass
    assert not await aredis.exists(prefix + "k")


async def test_a_holder_that_loses_its_lock_is_cancelled(aredis: Redis, keys: LockKeys) -> None:
    """If the lock passed to someone else, the old holder must stop writing."""
    prefix = f"lost-{secrets.token_hex(4)}:"
    locker = RedisLocker(keys, ttl=0.6, prefix=prefix)
    reached_the_end = False

    async def hold() -> None:
        nonlocal reached_the_end
        async with locker.lock("k"):
            await aredis.set(prefix + "k", "someone-else")  # as if it expired and was taken
            await asyncio.sleep(3)
            reached_the_end = True

    task = asyncio.ensure_future(hold())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not reached_the_end
    assert await aredis.get(prefix + "k") == b"someone-else"  # never released by the loser


async def test_locks_hold_across_a_redis_that_forgot_its_scripts(
    aredis: Redis, keys: LockKeys
) -> None:
    """A restarted Redis knows no scripts: renewal and release must still work."""
    prefix = f"noscript-{secrets.token_hex(4)}:"
    locker = RedisLocker(keys, ttl=0.3, prefix=prefix)
    async with locker.lock("k"):
        await aredis.script_flush()
        await anyio.sleep(0.5)  # renewed past its first TTL, though the script was gone
        assert await aredis.exists(prefix + "k")
        await aredis.script_flush()
    assert not await aredis.exists(prefix + "k")  # released, likewise
