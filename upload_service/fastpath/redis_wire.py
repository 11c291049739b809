"""One pipelined Redis connection for what every upload and poll does: its lock,
the refresh or read of its status cache, and each server's subscription to
status changes (the fast path's side of `core.redis_commands`).

Why not redis-py's asyncio client here: each command goes through a connection
pool with its condition and timeout, retries, argument wrappers and
observability hooks, and a PATCH takes and releases its lock, so under many
concurrent uploads that interpreter time shows in the event loop's profile.
Here a command is one `pack_command` and one write; Redis answers in order, so
every request shares one connection and a FIFO of futures matches replies to
callers, without a pool. Subscriptions (`listen`) get a connection of their own.

Failures are redis-py's exception types, so the app's handlers (503 when Redis
is unreachable) treat both clients alike. A connection Redis closed (a restart)
is noticed by the event loop at once and replaced by the next command; a Redis
that stops answering fails the waiting commands after `timeout` seconds.
Commands sent on a connection in the instant it died fail with ConnectionLost:
their caller may send them again when doing so twice is harmless (`retry_if_lost`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError, ResponseError

from upload_service.core.redis_scripts import LuaScript

Reply = Any  # bytes, int, None, or a list of replies


class ConnectionLost(ConnectionError):
    """The connection closed under a command: it may or may not have run."""


class RedisWire:
    """`await wire.execute("SET", key, value)`: one connection, made on first use."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")
        self.url = url
        self.timeout = timeout
        self._parts = parts
        self._wire: _Wire | None = None
        self._connecting = asyncio.Lock()

    async def execute(self, *args: str | bytes | int, retry_if_lost: bool = False) -> Reply:
        """One command's reply. `retry_if_lost`: for a command that may run twice
        (a read, a SET of the same value), sent once more on a new connection when
        Redis closed the old one under it (a restart the loop had not noticed yet)."""
        return await self._once_more_if_lost(lambda: self._send(args), retry_if_lost)

    async def pipeline(
        self, *commands: tuple[str | bytes | int, ...], retry_if_lost: bool = False
    ) -> list[Reply]:
        """Several commands in one write (one syscall); their replies, in order."""
        return await self._once_more_if_lost(lambda: self._send_all(commands), retry_if_lost)

    async def run_script(
        self,
        script: LuaScript,
        keys: list[str],
        args: list[str | int],
        retry_if_lost: bool = False,
    ) -> Reply:
        """EVALSHA, loading the script once if this Redis does not know it yet."""
        command = (len(keys), *keys, *args)
        try:
            return await self.execute("EVALSHA", script.sha, *command, retry_if_lost=retry_if_lost)
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script.source, *command, retry_if_lost=retry_if_lost)

    async def _once_more_if_lost(
        self, send: Callable[[], Awaitable[Reply]], retry_if_lost: bool
    ) -> Reply:
        try:
            return await send()
        except ConnectionLost:
            if not retry_if_lost:
                raise
        return await send()

    async def _send(self, args: tuple[str | bytes | int, ...]) -> Reply:
        wire = await self._connected()
        return await wire.send(args)

    async def _send_all(self, commands: tuple[tuple[str | bytes | int, ...], ...]) -> list[Reply]:
        wire = await self._connected()
        return await asyncio.gather(*wire.send_all(commands))

    async def _connected(self) -> _Wire:
        wire = self._wire
        if wire is None or wire.lost:
            wire = await self._connect()
        return wire

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    async def listen(self, channel: str, on_push: Callable[[Reply], None]) -> None:
        """SUBSCRIBE on a connection of its own; `on_push` gets every push
        (the confirmation first, then each message) until the connection breaks,
        which raises ConnectionError. Cancel the caller to stop."""
        wire = await self._open()
        try:
            wire.on_push = on_push
            wire.write(("SUBSCRIBE", channel))
            await asyncio.shield(wire.closed)
        finally:
            wire.close()
        raise ConnectionError("the Redis subscription's connection was lost")

    async def _connect(self) -> _Wire:
        async with self._connecting:
            if self._wire is None or self._wire.lost:  # else another caller connected
                self._wire = await self._open()
            return self._wire

    async def _open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        parts = self._parts
        try:
            async with asyncio.timeout(self.timeout):
                if parts.scheme == "unix":
                    transport, wire = await loop.create_unix_connection(
                        lambda: _Wire(self.timeout), parts.path
                    )
                else:
                    transport, wire = await loop.create_connection(
                        lambda: _Wire(self.timeout),
                        parts.hostname or "127.0.0.1",
                        parts.port or 6379,
                        ssl=parts.scheme == "rediss" or None,
                    )
                # uvloop may call connection_made only after this returns.
                wire.connection_made(transport)
                try:
                    await self._handshake(wire)
                except BaseException:
                    wire.close()
                    raise
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot reach Redis at {self._where()}: {e}") from e
        return wire

    async def _handshake(self, wire: _Wire) -> None:
        parts = self._parts
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            auth = (user, unquote(parts.password)) if user else (unquote(parts.password),)
            await wire.send(("AUTH", *auth))
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        if db and db != "0":
            await wire.send(("SELECT", db))

    def _where(self) -> str:
        parts = self._parts
        return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def _pack(args: tuple[str | bytes | int, ...]) -> bytes:
    # hiredis' stub types a 1-tuple, but any length is packed.
    return hiredis.pack_command(args)  # type: ignore[arg-type]


class _Wire(asyncio.Protocol):
    """The connection: commands written as they come, replies matched in order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.on_push: Callable[[Reply], None] | None = None  # a subscription's
        self._watchdog: asyncio.TimerHandle | None = None

    def write(self, args: tuple[str | bytes | int, ...]) -> None:
        self._write_packed(_pack(args))

    def send(self, args: tuple[str | bytes | int, ...]) -> asyncio.Future[Reply]:
        self.write(args)
        return self._expect_reply()

    def send_all(
        self, commands: tuple[tuple[str | bytes | int, ...], ...]
    ) -> list[asyncio.Future[Reply]]:
        self._write_packed(b"".join(map(_pack, commands)))
        return [self._expect_reply() for _ in commands]

    def _write_packed(self, data: bytes) -> None:
        if self.lost or self.transport is None:
            raise ConnectionLost("the Redis connection is closed")
        self.transport.write(data)

    def _expect_reply(self) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = self.loop.create_future()
        self.waiting.append((future, time.monotonic()))
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.timeout, self._check_answers)
        return future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as e:
                self._fail(ConnectionError(f"Redis sent something unreadable: {e}"))
                return
            if reply is False:  # hiredis' "no whole reply yet"
                return
            if self.on_push is not None:
                self.on_push(reply)
                continue
            future, _ = self.waiting.popleft()
            if future.done():  # its caller was cancelled: the reply is nobody's
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        reason = f": {exc}" if exc else ""
        self._fail(ConnectionLost(f"the Redis connection was lost{reason}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- failures -----------------------------------------------------------
    def _check_answers(self) -> None:
        """Every `timeout`, while commands wait: give up on a Redis that stopped answering."""
        self._watchdog = None
        if not self.waiting or self.lost:
            return
        _, oldest = self.waiting[0]
        due = oldest + self.timeout - time.monotonic()
        if due <= 0:
            self._fail(ConnectionError(f"Redis did not answer for {self.timeout:g} s"))
            return
        self._watchdog = self.loop.call_later(due, self._check_answers)

    def _fail(self, error: ConnectionError) -> None:
        """Fail every waiting command and drop the connection: its replies can't be matched now."""
        self.lost = True
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()
