"""A small TCP fault proxy for tests: put it between a client and a server (or the
service and Redis) and break the connections on purpose.

    proxy = FaultProxy(("127.0.0.1", redis_port)).start()
    ... connect to proxy.port ...
    proxy.reset_all()            # every connection reset (RST), new ones still pass
    proxy.mode = "blackhole"     # new connections are accepted, then nothing moves
    proxy.mode = "refuse"        # new connections are reset at once
    proxy.mode = "pass"
    proxy.delay = 0.2            # every piece toward the client waits this long
    proxy.stall(); proxy.resume()  # open connections stop moving bytes, then go on
    proxy.stop()

A connection mirrors its far side: the upstream's FIN becomes a FIN to the client,
and an upstream reset becomes a reset, dropping whatever the proxy had not passed
on yet (as a server's kernel drops its unsent bytes when it resets).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time

RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()

    def run(self) -> None:
        try:
            self.upstream = socket.create_connection(self.proxy.target, timeout=5)
            self.upstream.settimeout(None)
        except OSError:
            _reset(self.client)
            return
        threading.Thread(target=self._pump_up, daemon=True).start()
        self._pump_down()

    def _pump_up(self) -> None:  # client -> upstream
        assert self.upstream is not None
        try:
            while data := self.client.recv(65536):
                self.proxy.flowing.wait()
                self.upstream.sendall(data)
            self.upstream.shutdown(socket.SHUT_WR)
        except OSError:
            self.reset()

    def _pump_down(self) -> None:  # upstream -> client, with the chosen delay
        assert self.upstream is not None
        pieces: queue.Queue[tuple[float, bytes | None]] = queue.Queue()

        def deliver() -> None:
            while True:
                due, data = pieces.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.proxy.flowing.wait()
                if self.closed.is_set():
                    return
                try:
                    if data is None:
                        self.client.shutdown(socket.SHUT_WR)
                        return
                    self.client.sendall(data)
                except OSError:
                    self.reset()
                    return

        sender = threading.Thread(target=deliver, daemon=True)
        sender.start()
        try:
            while data := self.upstream.recv(65536):
                pieces.put((time.monotonic() + self.proxy.delay, data))
            pieces.put((time.monotonic() + self.proxy.delay, None))
        except OSError:  # reset by the upstream: reset the client now, unsent bytes lost
            self.reset()

    def reset(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class FaultProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "pass"  # pass | blackhole | refuse
        self.delay = 0.0
        self.links: list[_Link] = []
        self.held: list[socket.socket] = []  # black-holed connections, kept open
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self.flowing = threading.Event()
        self.flowing.set()

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _reset(client)
            elif self.mode == "blackhole":
                self.held.append(client)
            else:
                link = _Link(self, client)
                self.links.append(link)
                threading.Thread(target=link.run, daemon=True).start()

    def reset_all(self) -> None:
        for link in self.links:
            link.reset()
        self.links = []
        for sock in self.held:
            _reset(sock)
        self.held = []

    def stop(self) -> None:
        self._stopped.set()
        self.flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset_all()
