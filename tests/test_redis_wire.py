"""The lean Redis connection (upload_service.fastpath.redis_wire) against real redis-server
processes: replies matched to callers, errors, cancellation, restarts, a Redis that
stops answering, credentials and databases from the URL, subscriptions."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from conftest import RedisServer, free_port
from redis.exceptions import ConnectionError, ResponseError

from upload_service.core.redis_scripts import LuaScript
from upload_service.fastpath.redis_wire import ConnectionLost, RedisWire

pytestmark = pytest.mark.anyio


@pytest.fixture
async def wire(redis_server: RedisServer) -> AsyncIterator[RedisWire]:
    client = RedisWire(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this test's own, to restart or stop without disturbing the others."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("own-redis"))
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


async def test_replies_reach_their_callers(wire: RedisWire) -> None:
    keys = [f"wire-count-{i}" for i in range(200)]
    await wire.execute("DEL", *keys)
    # 400 commands in flight at once on the one connection.
    counts = await asyncio.gather(
        *(wire.execute("INCRBY", key, i) for i, key in enumerate(keys)),
        *(wire.execute("INCRBY", key, 1000) for key in keys),
    )
    # Redis runs them in the order sent: each caller gets its own command's answer.
    assert counts == [*range(200), *(i + 1000 for i in range(200))]
    assert await wire.execute("GET", "wire-missing-key") is None
    await wire.execute("RPUSH", "wire-list", "a", "b")
    assert await wire.execute("LRANGE", "wire-list", 0, -1) == [b"a", b"b"]
    await wire.execute("DEL", "wire-list")


async def test_a_pipeline_answers_each_command_in_order(wire: RedisWire) -> None:
    replies = await wire.pipeline(
        ("SET", "wire-pipe", "1"), ("INCR", "wire-pipe"), ("GET", "wire-pipe")
    )
    assert replies == [b"OK", 2, b"2"]


async def test_an_error_reply_fails_its_caller_alone(wire: RedisWire) -> None:
    await wire.execute("SET", "wire-text", "not a number")
    await wire.execute("SET", "wire-number", "1")
    # The failing command among others in flight: each of those still gets its own reply.
    before, failed, after = await asyncio.gather(
        wire.execute("GET", "wire-number"),
        wire.execute("INCR", "wire-text"),
        wire.execute("INCR", "wire-number"),
        return_exceptions=True,
    )
    assert before == b"1" and after == 2
    assert isinstance(failed, ResponseError) and "not an integer" in str(failed)
    assert await wire.execute("GET", "wire-text") == b"not a number"


async def test_a_cancelled_caller_leaves_the_replies_in_step(wire: RedisWire) -> None:
    await wire.execute("SET", "wire-step", "mine")
    # BLPOP holds the connection for 0.3 s; its caller gives up before the answer.
    blocked = asyncio.ensure_future(wire.execute("BLPOP", "wire-empty-list", "0.3"))
    after = asyncio.ensure_future(wire.execute("GET", "wire-step"))
    await asyncio.sleep(0.05)
    blocked.cancel()
    assert await after == b"mine"  # not BLPOP's nil, which nobody waits for now
    assert await wire.execute("ECHO", "next") == b"next"


async def test_a_script_runs_whether_or_not_redis_knows_it(
    wire: RedisWire, redis_client: redis.Redis
) -> None:
    script = LuaScript("return ARGV[1] .. KEYS[1]")
    redis_client.script_flush()  # as after a restart
    assert await wire.run_script(script, ["-key"], ["value"]) == b"value-key"
    assert await wire.run_script(script, ["-again"], ["value"]) == b"value-again"
    redis_client.script_flush()
    assert await wire.run_script(script, ["-flushed"], ["value"]) == b"value-flushed"
    await wire.execute("SET", "wire-script-text", "not a number")
    failing = LuaScript("return redis.call('incr', KEYS[1])")
    with pytest.raises(ResponseError, match="not an integer"):  # not taken for NOSCRIPT
        await wire.run_script(failing, ["wire-script-text"], [])


async def test_a_restarted_redis_is_reconnected(own_redis: RedisServer) -> None:
    wire = RedisWire(own_redis.url)
    try:
        assert await wire.execute("PING") == b"PONG"
        own_redis.restart()
        # A command that may run twice is sent again on a new connection: answered.
        assert await wire.execute("GET", "wire-after-restart", retry_if_lost=True) is None
        own_redis.restart()
        failures = 0
        for _ in range(2):
            try:
                assert await wire.execute("PING") == b"PONG"
                break
            except ConnectionLost:  # the command sent as the old connection died
                failures += 1
        assert failures <= 1
        assert await wire.execute("PING") == b"PONG"
    finally:
        await wire.aclose()


async def test_a_redis_that_stops_answering_fails_its_commands(own_redis: RedisServer) -> None:
    assert own_redis.process is not None
    wire = RedisWire(own_redis.url, timeout=0.5)
    try:
        assert await wire.execute("PING") == b"PONG"
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        with pytest.raises(ConnectionError, match="did not answer for 0.5 s"):
            await wire.execute("PING")
        os.kill(own_redis.process.pid, signal.SIGCONT)
        assert await wire.execute("PING") == b"PONG"  # on a new connection
    finally:
        await wire.aclose()


async def test_credentials_and_database_come_from_the_url(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = RedisServer(
        free_port(), tmp_path_factory.mktemp("auth-redis"), extra_args=["--requirepass", "s3cret"]
    )
    server.start()
    try:
        wire = RedisWire(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        await wire.execute("SET", "wire-db-key", "in db 3")
        await wire.aclose()
        check = redis.Redis(port=server.port, password="s3cret", db=3)
        assert check.get("wire-db-key") == b"in db 3"
        assert check.execute_command("SELECT", 0) and check.get("wire-db-key") is None
        check.close()

        with pytest.raises(ResponseError, match="WRONGPASS|invalid password"):
            await RedisWire(f"redis://:wrong@127.0.0.1:{server.port}/0").execute("PING")
        with pytest.raises(ResponseError, match="NOAUTH"):
            await RedisWire(f"redis://127.0.0.1:{server.port}/0").execute("PING")
    finally:
        server.stop()


async def test_an_unreachable_redis_says_where_it_looked() -> None:
    port = free_port()
    with pytest.raises(ConnectionError, match=f"cannot reach Redis at 127.0.0.1:{port}"):
        await RedisWire(f"redis://127.0.0.1:{port}/0").execute("PING")
    with pytest.raises(ValueError, match="unsupported Redis URL scheme 'http'"):
        RedisWire("http://127.0.0.1/0")


async def test_listen_hears_the_confirmation_then_each_message(
    wire: RedisWire, redis_client: redis.Redis
) -> None:
    pushes: list[list[bytes]] = []
    confirmed, all_in = asyncio.Event(), asyncio.Event()

    def on_push(push: list[bytes]) -> None:
        pushes.append(push)
        if push[0] == b"subscribe":
            confirmed.set()
        if len(pushes) == 4:
            all_in.set()

    listening = asyncio.ensure_future(wire.listen("wire-channel", on_push))
    await asyncio.wait_for(confirmed.wait(), 5)
    for n in range(3):
        redis_client.publish("wire-channel", f"m{n}")
    await asyncio.wait_for(all_in.wait(), 5)
    assert pushes[1:] == [[b"message", b"wire-channel", f"m{n}".encode()] for n in range(3)]
    # The listener has a connection of its own: commands go on meanwhile.
    assert await wire.execute("ECHO", "still here") == b"still here"
    listening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listening
    assert redis_client.pubsub_numsub("wire-channel") == [(b"wire-channel", 0)]


async def test_listen_raises_when_its_connection_breaks(own_redis: RedisServer) -> None:
    wire = RedisWire(own_redis.url)
    confirmed = asyncio.Event()
    listening = asyncio.ensure_future(wire.listen("c", lambda push: confirmed.set()))
    await asyncio.wait_for(confirmed.wait(), 5)
    own_redis.stop()
    with pytest.raises(ConnectionError, match="subscription's connection was lost"):
        await asyncio.wait_for(listening, 5)
