"""The raw kernel path as a reference: the least a tus-shaped server can do per upload.

`python -m bench.bare_splice PORT PROCESSES DIR` answers just enough tus for the
bench's clients: POST creates an empty file and answers 201 with a Location; PATCH
splices exactly Content-Length bytes from the socket into that file and answers
204; HEAD answers 200. PROCESSES processes (as many as the service runs) share the
listening socket, one thread and epoll each: no checks, no locks, no status, no
Redis. What the service reaches against what this reaches shows how much of a
figure is the service and how much is this machine (two cores shared by the
clients, the kernel's loopback and the server).
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import sys

PIPE_SIZE = 1024 * 1024


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.remaining = 0  # body bytes still to splice
        self.file: int | None = None
        self.pipe: tuple[int, int] | None = None

    def answer(self, status: bytes, extra: bytes = b"") -> None:
        self.sock.setblocking(True)
        self.sock.sendall(b"HTTP/1.1 " + status + b"\r\nTus-Resumable: 1.0.0\r\n" + extra + b"\r\n")
        self.sock.setblocking(False)

    def end_body(self) -> None:
        assert self.file is not None and self.pipe is not None
        offset = os.fstat(self.file).st_size
        for fd in (self.file, *self.pipe):
            os.close(fd)
        self.file = self.pipe = None
        self.answer(b"204 No Content", b"Upload-Offset: %d\r\n" % offset)

    def pump(self) -> None:
        assert self.pipe is not None and self.file is not None
        while self.remaining:
            try:
                n = os.splice(
                    self.sock.fileno(),
                    self.pipe[1],
                    min(self.remaining, PIPE_SIZE),
                    flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK,
                )
            except BlockingIOError:
                return
            if n == 0:  # the client went away
                self.remaining = 0
                break
            self.remaining -= n
            while n:
                n -= os.splice(self.pipe[0], self.file, n, flags=os.SPLICE_F_MOVE)
        if not self.remaining:
            self.end_body()


def serve(port: int, processes: int, directory: str) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)
    for _ in range(processes - 1):
        if os.fork() == 0:
            break  # a child: serves like the parent (the bench stops the process group)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, Conn] = {}
    created = 0
    while True:
        for fd, _ in poller.poll():
            if fd == listener.fileno():
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    conns[sock.fileno()] = Conn(sock)
                    poller.register(sock.fileno(), select.EPOLLIN)
                continue
            conn = conns[fd]
            if conn.remaining:
                conn.pump()
                continue
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                conn.sock.close()
                del conns[fd]
                continue
            conn.buffer += data
            if b"\r\n\r\n" not in conn.buffer:
                continue
            head, _, rest = conn.buffer.partition(b"\r\n\r\n")
            conn.buffer = b""
            request_line, *header_lines = head.split(b"\r\n")
            method, target = request_line.split()[:2]
            length = 0
            for line in header_lines:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if method == b"POST":
                created += 1
                upload_id = f"{os.getpid()}-{created}"  # unique across the processes
                open(os.path.join(directory, upload_id), "wb").close()
                conn.answer(
                    b"201 Created",
                    b"Location: /files/%s\r\nContent-Length: 0\r\n" % upload_id.encode(),
                )
            elif method == b"PATCH":
                upload = target.rsplit(b"/", 1)[1].decode()
                conn.file = os.open(os.path.join(directory, upload), os.O_WRONLY)
                os.write(conn.file, rest)
                conn.pipe = os.pipe()
                fcntl.fcntl(conn.pipe[1], fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                conn.remaining = length - len(rest)
                conn.pump()
            else:
                conn.answer(b"200 OK", b"Upload-Offset: 0\r\nContent-Length: 0\r\n")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
