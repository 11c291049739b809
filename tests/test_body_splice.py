"""The splice lanes move a body from a real TCP socket into a real file (at the
descriptor's position, which a store opened), and say how it ended: done, the
client gone, stalled, or stopped by a cancelled request."""

from __future__ import annotations

import asyncio
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from upload_service.fastpath import splice as body_splice
from upload_service.fastpath.splice import BodyJob, Outcome, _FileWriter, move_body

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the lanes resolve asyncio futures


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server side) of a loopback TCP connection; the server side non-blocking."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    receiver.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def send_in_background(sock: socket.socket, data: bytes, then_close: bool = False) -> None:
    def send() -> None:
        sock.sendall(data)
        if then_close:
            sock.shutdown(socket.SHUT_WR)

    asyncio.get_running_loop().run_in_executor(None, send)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[int]:
    """The file a store would have opened for the body: written at its position."""
    fd = os.open(tmp_path / "target", os.O_WRONLY | os.O_CREAT, 0o600)
    yield fd
    os.close(fd)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "target").write_bytes(b"")
    fd = os.open(tmp_path / "target", os.O_RDONLY)
    yield fd
    os.close(fd)


def readable_soon(sock: socket.socket) -> bool:
    """What an event loop asks of the socket before it reads a next request."""
    return bool(select.select([sock], [], [], 5)[0])


async def test_the_body_lands_byte_exact_and_the_next_request_stays_on_the_socket(
    connection: tuple[socket.socket, socket.socket], target: int, tmp_path: Path
) -> None:
    sender, receiver = connection
    head, body = os.urandom(1000), os.urandom(3 * MIB + 17)
    send_in_background(sender, body + b"GET /next")
    with anyio.fail_after(20):
        moved, outcome = await move_body(BodyJob(receiver, target, head, len(body), 30.0))
    assert (moved, outcome) == (len(body), Outcome.DONE)
    assert (tmp_path / "target").read_bytes() == head + body
    # Not one byte past the body was taken, and a short next request wakes its reader.
    assert readable_soon(receiver)
    assert receiver.recv(100) == b"GET /next"


async def test_a_client_that_leaves_early_ends_the_body_with_what_arrived(
    connection: tuple[socket.socket, socket.socket], target: int, tmp_path: Path
) -> None:
    sender, receiver = connection
    arrived = os.urandom(MIB + 5)
    send_in_background(sender, arrived, then_close=True)
    with anyio.fail_after(20):
        moved, outcome = await move_body(BodyJob(receiver, target, b"", 4 * MIB, 30.0))
    assert (moved, outcome) == (len(arrived), Outcome.EOF)
    assert (tmp_path / "target").read_bytes() == arrived


async def test_a_silent_client_is_reported_stalled_after_its_idle_timeout(
    connection: tuple[socket.socket, socket.socket], target: int, tmp_path: Path
) -> None:
    sender, receiver = connection
    arrived = os.urandom(100_000)  # below the low-water mark: taken on a tick
    send_in_background(sender, arrived)
    with anyio.fail_after(20):
        moved, outcome = await move_body(BodyJob(receiver, target, b"", MIB, 0.3))
    assert (moved, outcome) == (len(arrived), Outcome.STALLED)
    assert (tmp_path / "target").read_bytes() == arrived


async def test_cancelling_the_wait_stops_the_lane_and_keeps_the_bytes_moved(
    connection: tuple[socket.socket, socket.socket], target: int, tmp_path: Path
) -> None:
    sender, receiver = connection
    arrived = os.urandom(2 * MIB)
    send_in_background(sender, arrived)
    job = BodyJob(receiver, target, b"", 8 * MIB, None)  # only a stop ends it
    waiting = asyncio.ensure_future(move_body(job))
    with anyio.fail_after(20):
        # The lane thread advances `moved`; there is no event to wait on.
        while job.moved < len(arrived):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    # The cancelled caller waited for the lane: the outcome is in, the bytes are on disk.
    assert job.result.result() == (len(arrived), Outcome.STOPPED)
    assert (tmp_path / "target").read_bytes() == arrived


async def test_a_file_that_cannot_be_written_fails_the_body_with_the_os_error(
    connection: tuple[socket.socket, socket.socket], read_only: int
) -> None:
    _, receiver = connection
    with anyio.fail_after(20), pytest.raises(OSError):
        await move_body(BodyJob(receiver, read_only, b"head", MIB, 30.0))


async def test_a_failed_write_leaves_nothing_behind_for_the_next_body_on_the_lane(
    connection: tuple[socket.socket, socket.socket],
    read_only: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(body_splice, "LANES", body_splice.Lanes(1))  # both bodies, one pipe
    sender, receiver = connection
    send_in_background(sender, os.urandom(MIB))
    # The socket's bytes reach the pipe, then the file refuses them.
    with anyio.fail_after(20), pytest.raises(OSError):
        await move_body(BodyJob(receiver, read_only, b"", MIB, 30.0))

    with socket.create_server(("127.0.0.1", 0)) as listener:
        second_sender = socket.create_connection(listener.getsockname())
        second_receiver, _ = listener.accept()
    second_receiver.setblocking(False)
    body = os.urandom(2 * MIB)
    send_in_background(second_sender, body)
    fd = os.open(tmp_path / "target", os.O_WRONLY | os.O_TRUNC)
    try:
        with anyio.fail_after(20):
            moved, outcome = await move_body(BodyJob(second_receiver, fd, b"", len(body), 30.0))
    finally:
        os.close(fd)
        second_sender.close()
        second_receiver.close()
    assert (moved, outcome) == (len(body), Outcome.DONE)
    assert (tmp_path / "target").read_bytes() == body  # not a byte of the first body


async def test_the_body_goes_at_the_descriptors_position_and_the_descriptor_stays_its_owners(
    connection: tuple[socket.socket, socket.socket], target: int, tmp_path: Path
) -> None:
    # A store opens the file at the upload's offset, and closes it after the body.
    sender, receiver = connection
    os.write(target, b"already stored|")
    body = os.urandom(MIB)
    send_in_background(sender, body)
    with anyio.fail_after(20):
        assert await move_body(BodyJob(receiver, target, b"head|", MIB, 30.0)) == (
            MIB,
            Outcome.DONE,
        )
    os.write(target, b"|the next body")  # still open, positioned past the body
    assert (tmp_path / "target").read_bytes() == b"already stored|head|" + body + b"|the next body"


def test_a_file_that_refuses_splice_is_written_with_plain_writes(tmp_path: Path) -> None:
    # splice(2) refuses files opened for appending (EINVAL): the writer falls back.
    data = os.urandom(300_000)
    read_end, write_end = os.pipe()
    fd = os.open(tmp_path / "target", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        writer = _FileWriter(fd)
        for start in range(0, len(data), 60_000):
            piece = data[start : start + 60_000]
            os.write(write_end, piece)
            writer.write(read_end, len(piece))
    finally:
        for f in (read_end, write_end, fd):
            os.close(f)
    assert (tmp_path / "target").read_bytes() == data
