"""Nodes of a deployment as processes: each a server and a worker with their own environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import LiveServer, settings_env, wait_for_port

from upload_service.core.settings import Settings


class NodeServer(LiveServer):
    """`upload-service serve` given more time to come up: four processes of a
    deployment start at once on a small machine."""

    def start(self) -> NodeServer:
        env = settings_env(self.settings) | self.extra_env
        self.log_path = self.settings.data_dir.parent / f"server-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "upload_service.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, timeout=90)
        return self


@dataclass
class Node:
    name: str
    settings: Settings
    env: dict[str, str]  # beyond what the settings give (B2, the store)
    server: LiveServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


@contextmanager
def worker_process(settings: Settings, env: dict[str, str], log: Path) -> Iterator[None]:
    """`upload-service worker`: one process, one thread, no speech-to-text."""
    full = settings_env(settings) | env | {"TRANSCRIBE": "false"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "upload_service.cli", "worker"]
            + ["--processes", "1", "--threads", "1"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def running_nodes(nodes: list[Node]) -> Iterator[list[Node]]:
    """Every node's server and worker started; all stopped on the way out."""
    with ExitStack() as stack:
        for node in nodes:
            node.settings.data_dir.mkdir(parents=True, exist_ok=True)
            node.server = NodeServer(node.settings, extra_env=node.env).start()
            stack.callback(node.server.stop)
            log = node.settings.data_dir.parent / f"worker-{node.name}.log"
            stack.enter_context(worker_process(node.settings, node.env, log))
        yield nodes


def b2_env(realm: str, key_id: str, key: str, bucket: str) -> dict[str, str]:
    """UPLOAD_STORE=b2 and publishing to the same bucket, at `realm`."""
    return {
        "UPLOAD_STORE": "b2",
        "B2_REALM": realm,
        "B2_KEY_ID": key_id,
        "B2_APPLICATION_KEY": key,
        "B2_BUCKET": bucket,
        "B2_PREFIX": "media",
        "B2_PART_SIZE": str(8 * 1024),  # several parts for a small clip
        "B2_PUBLIC_URL": "https://cdn.example.com",
        "MEDIA_ACCESS": "public",
        # One server process a node: the test is about nodes, not processes.
        "UPLOAD_SERVER_WORKERS": "1",
    }
