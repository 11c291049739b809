"""The upload hot path's speed-ups keep their semantics: overlapped writes, the
copy-free body buffer in the HTTP protocol, and a Redis pool that waits instead
of failing under many concurrent status reads. (Speed itself is measured in bench/.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import API_KEY

from upload_service.core.store.base import UploadInfo
from upload_service.core.store.local import WRITE_BATCH, LocalStore
from upload_service.fastpath.protocol import HIGH_WATER, UploadHttpToolsProtocol, _Pieces

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


class GatedDigest:
    """sha256 whose first update waits until the body is asked for more bytes."""

    def __init__(self, gate: threading.Event) -> None:
        self.inner = hashlib.sha256()
        self.gate = gate

    def update(self, data: bytes, /) -> None:
        if not self.gate.wait(10):
            raise TimeoutError("the next chunk was never read while this batch was written")
        self.inner.update(data)

    def digest(self) -> bytes:
        return self.inner.digest()


async def test_the_next_batch_is_read_while_the_previous_one_is_written(tmp_path: Path) -> None:
    # The first batch's write blocks until the store asks the body for the chunk
    # after it: a store that waits for each write before reading deadlocks here.
    store = LocalStore(tmp_path)
    info = UploadInfo(id="overlap", owner="u", length=3 * WRITE_BATCH)
    await store.create(info)
    pieces = [os.urandom(WRITE_BATCH) for _ in range(3)]
    gate = threading.Event()

    async def body() -> AsyncIterator[bytes]:
        for i, piece in enumerate(pieces):
            if i == 1:
                gate.set()  # batch 0 was handed to its thread; now batch 1 is read
            yield piece

    expected = hashlib.sha256(b"".join(pieces)).digest()
    with anyio.fail_after(20):
        offset = await store.write(info, body(), 3 * WRITE_BATCH, (GatedDigest(gate), expected))
    assert offset == 3 * WRITE_BATCH
    assert (tmp_path / "overlap").read_bytes() == b"".join(pieces)


async def test_a_dropped_body_keeps_every_batch_already_handed_to_a_thread(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    info = UploadInfo(id="dropped", owner="u", length=10 * MIB)
    await store.create(info)
    data = os.urandom(3 * WRITE_BATCH)

    class Dropped(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]
        raise Dropped()

    with pytest.raises(Dropped):
        await store.write(info, body(), 10 * MIB)
    stored = (tmp_path / "dropped").read_bytes()
    # Whole batches land (the last one possibly still in flight when the body broke).
    assert len(stored) >= 2 * WRITE_BATCH
    assert stored == data[: len(stored)]
    assert (await store.get("dropped")).offset == len(stored)


async def test_a_cancelled_write_lets_the_batch_in_flight_land_and_closes_the_file(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    info = UploadInfo(id="cancelled", owner="u", length=10 * MIB)
    await store.create(info)
    data = os.urandom(2 * WRITE_BATCH)
    read_past_first_batch = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield data[:WRITE_BATCH]
        yield data[WRITE_BATCH:]
        read_past_first_batch.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.write, info, body(), 10 * MIB)
        await read_past_first_batch.wait()
        tg.cancel_scope.cancel()
    stored = (tmp_path / "cancelled").read_bytes()
    assert stored == data[: len(stored)] and len(stored) >= WRITE_BATCH
    # The file was closed: nothing of this process still holds it open.
    fd_dir = Path("/proc/self/fd")
    assert not any(
        os.readlink(fd_dir / fd).endswith("/cancelled")
        for fd in os.listdir(fd_dir)
        if (fd_dir / fd).exists()
    )


def test_pieces_hand_a_lone_piece_over_without_copying_and_join_several() -> None:
    pieces = _Pieces()
    one = os.urandom(1000)
    pieces.append(one)
    assert bytes(pieces) is one
    pieces.append(b"tail")
    assert bytes(pieces) == one + b"tail" and len(pieces) == 1004


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = 0
        self.written = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_the_protocol_delivers_the_body_intact_and_pauses_past_the_high_water() -> None:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    received: list[bytes] = []
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        more = True
        while more:
            message = await receive()
            received.append(message["body"])
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        done.set()

    config = Config(app=app, http=UploadHttpToolsProtocol, log_config=None, lifespan="off")
    config.load()
    protocol = UploadHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    body = os.urandom(3 * HIGH_WATER)
    head = f"PATCH /files/x HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
    protocol.data_received(head.encode() + body[:HIGH_WATER])
    protocol.data_received(body[HIGH_WATER : 2 * HIGH_WATER + 1])  # past the high water
    assert transport.paused >= 1
    protocol.data_received(body[2 * HIGH_WATER + 1 :])
    with anyio.fail_after(5):
        await done.wait()
    assert b"".join(received) == body
    assert transport.written.startswith(b"HTTP/1.1 204")


async def test_many_concurrent_status_reads_wait_for_a_redis_connection_instead_of_failing(
    client: httpx.AsyncClient, make_token: Any
) -> None:
    token = make_token()
    created = await client.post(
        "/files/",
        headers={
            "Tus-Resumable": "1.0.0",
            "Authorization": f"Bearer {token}",
            "Upload-Length": "5",
        },
    )
    assert created.status_code == 201
    upload_id = created.headers["location"].rsplit("/", 1)[1]

    async def read() -> int:
        r = await client.get(
            f"/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        return r.status_code

    # More than redis-py's default pool of 100 connections, all at once.
    statuses = await asyncio.gather(*(read() for _ in range(150)))
    assert set(statuses) == {200}
