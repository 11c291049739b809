"""Moving upload bodies from their sockets into their files inside the kernel.

`splice(2)` moves the bytes socket -> pipe -> file without them ever reaching
Python: no `bytes` objects, no copies through user memory, no event-loop turn
per read. A few "lane" threads do it for every body at once, each waiting on
its sockets with epoll, so the event loop only sees each body's start and end
and stays free for HEADs and status reads while uploads stream in.

The bench compares this with a bare responder that does nothing but splice
(bench/bare_splice.py): the kernel's own pace is the target.

Only the moving lives here; protocol.py hands bodies over once their request's
headers are parsed, and body.py asks for them to be moved into a store's file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import errno
import fcntl
import os
import select
import socket
import threading
import time
from typing import Protocol

from upload_service.core.body_rate import RateFloor

# The ASGI scope extension through which the application asks for this.
BODY_TO_FILE = "upload_service.body_to_file"

# One pipe per body: the kernel moves at most this much per round trip. 1 MiB
# is Linux's default ceiling for unprivileged pipes; bigger rounds mean fewer
# syscalls (measured: 1 MiB moved 1 GiB with ~20 % less CPU than 256 KiB).
PIPE_SIZE = 1024 * 1024
# A lane wakes for a socket once this much waits on it (or the body's rest
# does): with a hundred uploads at once, waking per TCP segment costs far more
# wake-ups than bytes. Every tick a lane also takes what slow clients sent
# below that mark, and checks for stalls.
LOW_WATER = 256 * 1024
TICK = 0.5


class Outcome(enum.Enum):
    DONE = "done"  # every byte asked for is in the file
    EOF = "eof"  # the client closed or reset the connection first
    STALLED = "stalled"  # no byte arrived for the idle timeout, or too few for the rate floor
    STOPPED = "stopped"  # the server asked to stop (the request was cancelled)


class SocketLike(Protocol):
    """What is needed of the transport's socket (uvloop and asyncio differ in type)."""

    def fileno(self) -> int: ...
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def splice_supported() -> bool:
    return hasattr(os, "splice") and hasattr(select, "epoll")


class BodyJob:
    """One body: `head` (bytes the HTTP parser already read), then `count` bytes off `sock`,
    written at `file_fd`'s position (the caller opened it, and closes it after).

    `result` resolves, on the event loop it was made on, to (bytes moved off the
    socket, outcome) or to the OSError that writing the file raised. Every byte
    taken off the socket is in the file by then.
    """

    def __init__(
        self,
        sock: SocketLike,
        file_fd: int,
        head: bytes,
        count: int,
        idle_timeout: float | None,
        rate_floor: RateFloor | None = None,
    ) -> None:
        self.sock = sock
        self.sock_fd = sock.fileno()
        self.file_fd = file_fd
        self.head = head
        self.count = count
        self.idle_timeout = idle_timeout
        self.moved = 0
        self.stop_requested = False
        self.last_byte_at = time.monotonic()
        self.pace = rate_floor.start(self.last_byte_at) if rate_floor else None
        self.loop = asyncio.get_running_loop()
        self.result: asyncio.Future[tuple[int, Outcome]] = self.loop.create_future()
        self._low_water = 0
        self._lane: _Lane | None = None
        self._file: _FileWriter | None = None

    def request_stop(self) -> None:
        self.stop_requested = True
        if self._lane is not None:
            self._lane.wake()

    # -- in the lane thread ---------------------------------------------------
    def start(self) -> None:
        self._file = _FileWriter(self.file_fd)
        view = memoryview(self.head)
        while view:
            view = view[os.write(self.file_fd, view) :]
        self.head = b""
        self._set_low_water()

    def pump(self, pipe: _Pipe) -> Outcome | None:
        """Take everything the socket holds now; an outcome once the body is over.

        The pipe is the lane's: it is empty again whenever this returns or raises
        (the lane replaces it after an error, with whatever it still held).
        """
        while self.moved < self.count:
            try:
                n = os.splice(
                    self.sock_fd,
                    pipe.write_end,
                    min(self.count - self.moved, pipe.size),
                    flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK,
                )
            except BlockingIOError:
                return None
            except OSError:
                n = 0  # reset or timed out: the connection is gone either way
            if n == 0:
                return Outcome.EOF
            assert self._file is not None  # opened in start()
            self._file.write(pipe.read_end, n)
            self.moved += n
            self.last_byte_at = time.monotonic()
            self._set_low_water()
        return Outcome.DONE

    def stalled(self, now: float) -> bool:
        """Nothing for the idle timeout, or slower than the rate floor: a trickle too."""
        if self.idle_timeout is not None and now - self.last_byte_at > self.idle_timeout:
            return True
        return self.pace is not None and self.pace.too_slow(self.moved, now)

    def _set_low_water(self) -> None:
        wanted = max(1, min(LOW_WATER, self.count - self.moved))
        if wanted != self._low_water:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, wanted)
            self._low_water = wanted

    def finish(self, outcome: Outcome | BaseException) -> None:
        if self._low_water > 1:  # the event loop reads this socket again next
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            self.loop.call_soon_threadsafe(_resolve, self.result, outcome, self.moved)


def _resolve(
    result: asyncio.Future[tuple[int, Outcome]], outcome: Outcome | BaseException, moved: int
) -> None:
    if result.done():
        return
    if isinstance(outcome, BaseException):
        result.set_exception(outcome)
    else:
        result.set_result((moved, outcome))


class _Pipe:
    """A lane's pipe, through which every body it moves passes (empty between moves).

    One per lane rather than one per body: a user's pipes share a soft limit
    (fs.pipe-user-pages-soft, 64 MiB by default) past which new pipes shrink to
    a page, so a hundred 1 MiB pipes at once would have crawled.
    """

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # a smaller pipe still works
            self.size = fcntl.fcntl(self.write_end, fcntl.F_GETPIPE_SZ)

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class _FileWriter:
    """Empties the pipe into the file: splice, or read+write where the file system can't splice."""

    def __init__(self, file_fd: int) -> None:
        self.file_fd = file_fd
        self.can_splice = True

    def write(self, pipe_fd: int, n: int) -> None:
        while n > 0:
            if self.can_splice:
                try:
                    n -= os.splice(pipe_fd, self.file_fd, n, flags=os.SPLICE_F_MOVE)
                    continue
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    self.can_splice = False
            block = os.read(pipe_fd, n)
            view = memoryview(block)
            while view:
                view = view[os.write(self.file_fd, view) :]
            n -= len(block)


class _Lane(threading.Thread):
    """One thread moving many bodies: epoll over their sockets, level-triggered."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.epoll = select.epoll()
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.epoll.register(self._wakeup_r, select.EPOLLIN)
        self.inbox: collections.deque[BodyJob] = collections.deque()
        self.jobs: dict[int, BodyJob] = {}
        self.pipe = _Pipe()

    @property
    def load(self) -> int:
        return len(self.jobs) + len(self.inbox)

    def submit(self, job: BodyJob) -> None:
        job._lane = self
        self.inbox.append(job)
        self.wake()

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake-pending
            os.write(self._wakeup_w, b"x")

    def run(self) -> None:
        while True:
            for fd, _ in self.epoll.poll(TICK):
                if fd == self._wakeup_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wakeup_r, 4096)
                    self._take_inbox()
                elif (job := self.jobs.get(fd)) is not None:
                    self._step(job)
            self._sweep()

    def _take_inbox(self) -> None:
        while self.inbox:
            job = self.inbox.popleft()
            try:
                job.start()
            except OSError as e:
                job.finish(e)
                continue
            self.jobs[job.sock_fd] = job
            self.epoll.register(job.sock_fd, select.EPOLLIN | select.EPOLLRDHUP)
            self._step(job)  # bytes may be waiting already

    def _step(self, job: BodyJob) -> None:
        try:
            outcome = job.pump(self.pipe)
        except OSError as e:  # writing the file failed (disk full, ...)
            self.pipe.close()  # it may still hold that body's bytes
            self.pipe = _Pipe()
            self._end(job, e)
            return
        if outcome is not None:
            self._end(job, outcome)

    def _sweep(self) -> None:
        """Each tick: stop requests, stalls, and what slow clients left below the mark."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.stop_requested:
                self._end(job, Outcome.STOPPED)
                continue
            self._step(job)
            if job.sock_fd in self.jobs and job.stalled(now):
                self._end(job, Outcome.STALLED)

    def _end(self, job: BodyJob, outcome: Outcome | BaseException) -> None:
        if self.jobs.pop(job.sock_fd, None) is not None:
            self.epoll.unregister(job.sock_fd)
        job.finish(outcome)


class Lanes:
    """The per-process set of lanes, started on first use."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()

    def submit(self, job: BodyJob) -> None:
        with self._lock:
            if not self._lanes:
                self._lanes = [_Lane(f"body-splice-{i}") for i in range(self.count)]
                for lane in self._lanes:
                    lane.start()
        min(self._lanes, key=lambda lane: lane.load).submit(job)


# Two lanes keep both cores of a small machine busy; one lane alone already
# outruns a disk, so more only helps on bigger machines.
LANES = Lanes(min(4, os.cpu_count() or 1))


async def move_body(job: BodyJob) -> tuple[int, Outcome]:
    """Hand `job` to a lane and wait for it; a cancelled caller waits for the stop."""
    LANES.submit(job)
    try:
        return await asyncio.shield(job.result)
    except asyncio.CancelledError:
        # The request is being cancelled (shutdown): the lane ends the body and
        # its last bytes land before the caller records the offset.
        job.request_stop()
        while not job.result.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(job.result)
        raise
