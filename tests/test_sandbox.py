"""What the media tools' sandbox guarantees, each shown against a tool that tries.

The tools here are asked outright to break out (no input allowlist in the
way): the sandbox alone must stop them. Each refusal has its control: the
same command without the sandbox does what the sandbox forbids, so a test
cannot pass because the attempt itself was broken.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from media_helpers import make_audio

from processors.failures import ProcessingLimit
from processors.ffmpeg_run import run_ffmpeg
from processors.media_policy import MediaLimits
from processors.media_tools import MediaTools
from processors.sandbox import Sandbox, SandboxUnavailable
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]


class Listener:
    """A TCP listener on loopback that counts who connects to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def job(tmp_path: Path) -> MediaTools:
    """A job as the pipeline sets it up: the upload beside other users' files."""
    uploads = tmp_path / "uploads"
    source = make_audio(uploads / "mine.wav", seconds=1)
    make_audio(uploads / "someone-elses.wav", seconds=1)
    work = tmp_path / "work" / "mine"
    work.mkdir(parents=True)
    return MediaTools.for_job(Settings(data_dir=tmp_path), source, work)


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_no_network_inside(job: MediaTools, listener: Listener) -> None:
    fetch = [*FFMPEG, "-i", f"http://127.0.0.1:{listener.port}/x.ts", "-f", "null", "-"]
    assert run(job.command(fetch, 1)).returncode != 0
    assert listener.connections == 0
    run(fetch)  # the control: unconfined, ffmpeg does connect
    assert listener.connections == 1


def test_only_its_own_upload_is_visible(job: MediaTools) -> None:
    other = job.source.with_name("someone-elses.wav")
    read_other = [*FFMPEG, "-i", str(other), "-f", "null", "-"]
    refused = run(job.command(read_other, 1))
    assert "No such file or directory" in refused.stderr
    assert run(read_other).returncode == 0  # the control
    read_own = [*FFMPEG, "-i", str(job.source), "-f", "null", "-"]
    assert run(job.command(read_own, 1)).returncode == 0


def test_nothing_of_the_host_beyond_programs(job: MediaTools) -> None:
    listing = run(job.command(["ls", "/", "/etc", str(job.source.parent)], 1))
    assert listing.returncode == 0, listing.stderr
    names = set(listing.stdout.split())
    assert not names & {"root", "home", "var", "passwd", "shadow", "hostname", "someone-elses.wav"}
    assert "mine.wav" in names
    assert run(job.command(["cat", "/etc/passwd"], 1)).returncode != 0


def test_only_the_work_dir_is_writable(job: MediaTools) -> None:
    assert job.work is not None
    into_work = [*FFMPEG, "-i", str(job.source), str(job.work / "copy.wav")]
    assert run(job.command(into_work, 1)).returncode == 0
    assert (job.work / "copy.wav").stat().st_size > 0
    beside_the_upload = job.source.with_name("planted.wav")
    plant = [*FFMPEG, "-i", str(job.source), str(beside_the_upload)]
    assert run(job.command(plant, 1)).returncode != 0
    assert not beside_the_upload.exists()
    overwrite = [*FFMPEG, "-i", str(job.work / "copy.wav"), str(job.source)]
    before = job.source.read_bytes()
    assert run(job.command(overwrite, 1)).returncode != 0
    assert job.source.read_bytes() == before


def test_over_its_memory_limit_a_run_fails_as_too_costly(tmp_path: Path) -> None:
    tools = MediaTools(
        make_audio(tmp_path / "in.wav", seconds=1),
        tmp_path,
        sandbox=Sandbox(memory_bytes=768 * 1024**2),
    )
    with pytest.raises(ProcessingLimit, match="memory") as refused:
        run_ffmpeg(
            ["-f", "lavfi", "-i", "color=s=8192x4320", "-frames:v", "3", "-c:v", "libx264"]
            + ["-f", "null", "-"],
            tools=tools,
            duration=1,
            timeout=120,
            log_path=tmp_path / "ffmpeg.log",
        )
    assert refused.value.code == "processing_limit"


def test_a_contained_run_counts_as_the_worker_s_cpu(job: MediaTools) -> None:
    """The CPU a tool burns in its sandbox shows up as the worker's children's, as the
    bench and any process accounting (a container's CPU quota, `time`) expect."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    encode = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:duration=2"]
    assert run(job.command([*encode, "-c:v", "libx264", "-f", "null", "-"], 1)).returncode == 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert after.ru_utime - before.ru_utime > 0.2


def test_cpu_limit_follows_the_media_length() -> None:
    limits = MediaLimits(cpu_per_second=2.0, cpu_min=60)
    assert limits.cpu_seconds(3600) == 7200
    assert limits.cpu_seconds(5) == 60
    assert limits.cpu_seconds(None) == 60


def test_a_host_without_bubblewrap_stops_the_worker_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="MEDIA_SANDBOX=none"):
        Sandbox().check()
    Sandbox(mode="none").check()  # the operator's explicit choice


def test_the_sandbox_setting_is_checked() -> None:
    with pytest.raises(SystemExit, match="MEDIA_SANDBOX"):
        Sandbox.from_settings(Settings(media_sandbox="firejail"))
