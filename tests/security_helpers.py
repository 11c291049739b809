"""What the hostile-media tests check against: a loopback listener that counts every
connection, the private files a hostile manifest names, where the secret may have
leaked to, and the pipeline run in-process on an upload."""

from __future__ import annotations

import select
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from hostile_references import SECRET_MARKER, SECRET_RGB

from upload_service.core.settings import Settings

# Neighbour uploads are stored as `<uploads dir>/<id>`; this one stands for another user's.
NEIGHBOUR_ID = "VictimUpload_0123456789ab"


class Listener:
    """TCP and UDP on one loopback port, in a thread, counting what arrives."""

    def __init__(self) -> None:
        for _ in range(50):
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            break
        else:
            raise RuntimeError("no loopback port free for both TCP and UDP")
        tcp.listen(64)
        self.tcp, self.udp, self.port = tcp, udp, port
        self.connections = 0
        self.datagrams = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.tcp, self.udp], [], [], 0.05)
            if self.tcp in ready:
                conn, _ = self.tcp.accept()
                self.connections += 1
                conn.close()
            if self.udp in ready:
                self.udp.recvfrom(65536)
                self.datagrams += 1

    def settle(self) -> int:
        """Stop serving, count what still waits in the queues; all that reached the port."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(5)
            self.tcp.setblocking(False)
            self.udp.setblocking(False)
            while True:
                try:
                    conn, _ = self.tcp.accept()
                except BlockingIOError:
                    break
                self.connections += 1
                conn.close()
            while True:
                try:
                    self.udp.recvfrom(65536)
                except BlockingIOError:
                    break
                self.datagrams += 1
        return self.connections + self.datagrams

    def url(self, scheme: str, name: str = "x.ts") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.settle()
        self.tcp.close()
        self.udp.close()


@dataclass
class Target:
    """The private files and the listener that the hostile manifests name."""

    listener: Listener
    secret_ts: Path  # a host file outside the data dir
    secret_mp4: Path  # the same, fragmented MP4 (DASH, #EXT-X-MAP)
    variant: Path  # a host HLS playlist naming secret_ts (for a master playlist to point at)
    neighbour: str = NEIGHBOUR_ID  # another user's upload, beside the attacker's

    def url(self, scheme: str, name: str = "x.ts") -> str:
        return self.listener.url(scheme, name)


# Published names decoded to look for the secret's picture, with the demuxer forced:
# never a playlist or the uploaded original, which would replay the attack.
_FRAME_FORMATS = {".jpg": "jpeg_pipe", ".ts": "mpegts", ".mp4": "mov", ".mov": "mov"}


def _first_frame_rgb(path: Path) -> tuple[int, int, int] | None:
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-f", _FRAME_FORMATS[path.suffix]]
        + ["-i", str(path), "-frames:v", "1", "-vf", "scale=1:1", "-f", "rawvideo"]
        + ["-pix_fmt", "rgb24", "-"],
        capture_output=True,
        timeout=60,
    )
    if len(result.stdout) < 3:
        return None
    red, green, blue = result.stdout[:3]
    return red, green, blue


def secret_traces(root: Path) -> list[str]:
    """Files under `root` that carry the secret: its marker bytes, or a frame of its colour."""
    traces = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        if SECRET_MARKER.encode() in path.read_bytes():
            traces.append(f"{name}: the secret's marker")
        if path.suffix in _FRAME_FORMATS and not path.name.startswith("original"):
            rgb = _first_frame_rgb(path)
            if rgb and all(abs(a - b) <= 16 for a, b in zip(rgb, SECRET_RGB, strict=True)):
                traces.append(f"{name}: a frame of the secret's colour {rgb}")
    return traces


def published(settings: Settings, upload_id: str) -> list[str]:
    base = settings.media_dir / upload_id
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
