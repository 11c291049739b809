"""The splice lanes move a body from a real TCP socket into a real file, and say
how it ended: done, the client gone, stalled, or stopped by a cancelled request."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator
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


def open_target(tmp_path: Path, flags: int = 0) -> int:
    return os.open(tmp_path / "target", os.O_WRONLY | os.O_CREAT | flags, 0o600)


def opener(tmp_path: Path, flags: int = 0) -> Callable[[], int]:
    """What a store hands the lane: it opens the file in its thread, and closes it."""
    return lambda: open_target(tmp_path, flags)


def read_only(tmp_path: Path) -> Callable[[], int]:
    return lambda: os.open(tmp_path / "target", os.O_RDONLY)


def open_descriptors_of(path: Path) -> int:
    return sum(
        1
        for fd in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(path)
    )


async def test_the_body_lands_byte_exact_and_the_next_request_stays_on_the_socket(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    sender, receiver = connection
    head, body = os.urandom(1000), os.urandom(3 * MIB + 17)
    send_in_background(sender, body + b"GET /next")
    with anyio.fail_after(20):
        moved, outcome = await move_body(BodyJob(receiver, opener(tmp_path), head, len(body), 30.0))
    assert (moved, outcome) == (len(body), Outcome.DONE)
    assert (tmp_path / "target").read_bytes() == head + body
    # Not one byte past the body was taken, and the socket wakes for single bytes again.
    receiver.setblocking(True)
    assert receiver.recv(100) == b"GET /next"
    assert receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1


async def test_a_client_that_leaves_early_ends_the_body_with_what_arrived(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    sender, receiver = connection
    arrived = os.urandom(MIB + 5)
    send_in_background(sender, arrived, then_close=True)
    with anyio.fail_after(20):
        moved, outcome = await move_body(BodyJob(receiver, opener(tmp_path), b"", 4 * MIB, 30.0))
    assert (moved, outcome) == (len(arrived), Outcome.EOF)
    assert (tmp_path / "target").read_bytes() == arrived


async def test_a_silent_client_is_reported_stalled_after_its_idle_timeout(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    sender, receiver = connection
    arrived = os.urandom(100_000)  # below the low-water mark: taken on a tick
    send_in_background(sender, arrived)
    with anyio.fail_after(20):
        moved, outcome = await move_body(BodyJob(receiver, opener(tmp_path), b"", MIB, 0.3))
    assert (moved, outcome) == (len(arrived), Outcome.STALLED)
    assert (tmp_path / "target").read_bytes() == arrived


async def test_cancelling_the_wait_stops_the_lane_and_keeps_the_bytes_moved(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    sender, receiver = connection
    arrived = os.urandom(2 * MIB)
    send_in_background(sender, arrived)
    job = BodyJob(receiver, opener(tmp_path), b"", 8 * MIB, None)  # only a stop ends it
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
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    _, receiver = connection
    (tmp_path / "target").write_bytes(b"")
    with anyio.fail_after(20), pytest.raises(OSError):
        await move_body(BodyJob(receiver, read_only(tmp_path), b"head", MIB, 30.0))


async def test_a_failed_write_leaves_nothing_behind_for_the_next_body_on_the_lane(
    connection: tuple[socket.socket, socket.socket],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(body_splice, "LANES", body_splice.Lanes(1))  # both bodies, one pipe
    sender, receiver = connection
    (tmp_path / "target").write_bytes(b"")
    send_in_background(sender, os.urandom(MIB))
    # The socket's bytes reach the pipe, then the file refuses them.
    with anyio.fail_after(20), pytest.raises(OSError):
        await move_body(BodyJob(receiver, read_only(tmp_path), b"", MIB, 30.0))

    with socket.create_server(("127.0.0.1", 0)) as listener:
        second_sender = socket.create_connection(listener.getsockname())
        second_receiver, _ = listener.accept()
    second_receiver.setblocking(False)
    body = os.urandom(2 * MIB)
    send_in_background(second_sender, body)
    try:
        with anyio.fail_after(20):
            job = BodyJob(second_receiver, opener(tmp_path, os.O_TRUNC), b"", len(body), 30.0)
            moved, outcome = await move_body(job)
    finally:
        second_sender.close()
        second_receiver.close()
    assert (moved, outcome) == (len(body), Outcome.DONE)
    assert (tmp_path / "target").read_bytes() == body  # not a byte of the first body


async def test_the_lane_closes_the_file_it_opened_however_the_body_ends(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    sender, receiver = connection
    target = tmp_path / "target"
    send_in_background(sender, os.urandom(MIB))
    with anyio.fail_after(20):
        assert await move_body(BodyJob(receiver, opener(tmp_path), b"", MIB, 30.0)) == (
            MIB,
            Outcome.DONE,
        )
    assert open_descriptors_of(target) == 0
    send_in_background(sender, os.urandom(1000), then_close=True)
    with anyio.fail_after(20):
        assert await move_body(BodyJob(receiver, opener(tmp_path), b"", MIB, 30.0)) == (
            1000,
            Outcome.EOF,
        )
    assert open_descriptors_of(target) == 0
    with anyio.fail_after(20), pytest.raises(OSError):
        await move_body(BodyJob(receiver, read_only(tmp_path), b"x", MIB, 30.0))
    assert open_descriptors_of(target) == 0


async def test_a_file_that_cannot_be_opened_fails_the_body_with_the_os_error(
    connection: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    _, receiver = connection
    with anyio.fail_after(20), pytest.raises(FileNotFoundError):
        await move_body(BodyJob(receiver, opener(tmp_path / "missing-dir"), b"", MIB, 30.0))


def test_a_file_that_refuses_splice_is_written_with_plain_writes(tmp_path: Path) -> None:
    # splice(2) refuses files opened for appending (EINVAL): the writer falls back.
    data = os.urandom(300_000)
    read_end, write_end = os.pipe()
    fd = open_target(tmp_path, os.O_APPEND)
    try:
        writer = _FileWriter(fd)
        for start in range(0, len(data), 60_000):
            piece = data[start : start + 60_000]
            os.write(write_end, piece)
            writer.write(read_end, len(piece))
    finally:
        for f in (read_end, write_end, fd):
            os.close(f)
    assert writer.can_splice is False
    assert (tmp_path / "target").read_bytes() == data
