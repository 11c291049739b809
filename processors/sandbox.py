"""Containing the media tools: ffmpeg and ffprobe run as if on a bare machine.

Each run gets, through bubblewrap (`MEDIA_SANDBOX=bwrap`, the default):
- no network: a network namespace of its own, with nothing in it;
- a file system holding the system's programs and libraries (read-only), the
  one upload it reads (read-only) and the job's work dir (the only writable
  place, temporary files included); no other upload, no data dir, no /etc
  beyond the linker's files, no home, no /tmp;
- its own PID, IPC and UTS namespaces, a new session (no terminal to push
  keystrokes into), and death when the worker thread that started it dies;
- CPU-time, address-space and file-size limits (setrlimit, via prlimit), so a
  file that costs more than it may is killed by the kernel, not by hope.

`MEDIA_SANDBOX=none` keeps the rlimits and the input allowlists but drops the
namespaces: for a host where unprivileged namespaces are forbidden, and only
where the workers are contained some other way (docs/security.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from upload_service.core.settings import Settings

# The linker's cache and Debian's alternatives (libblas and friends are
# symlinks through /etc/alternatives): what the tools need of /etc.
_ETC_NEEDED = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# A run writes HLS segments and an MP4 download: generous, but finite.
MAX_FILE_BYTES = 64 * 1024**3


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this host."""


@dataclass(frozen=True)
class Sandbox:
    mode: str = "bwrap"  # "bwrap" | "none"
    memory_bytes: int = 4 * 1024**3

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        if settings.media_sandbox not in ("bwrap", "none"):
            raise SystemExit(f"MEDIA_SANDBOX must be bwrap or none, got {settings.media_sandbox!r}")
        return cls(settings.media_sandbox, settings.media_memory_limit)

    def command(
        self,
        argv: Sequence[str],
        *,
        cpu_seconds: int,
        readable: Iterable[Path] = (),
        writable: Iterable[Path] = (),
    ) -> list[str]:
        """`argv` wrapped in the limits and, with bwrap, the namespaces."""
        limits = [
            "prlimit",
            # SIGXCPU at the soft limit (ffmpeg exits on it), SIGKILL soon after.
            f"--cpu={cpu_seconds}:{cpu_seconds + 5}",
            f"--as={self.memory_bytes}",
            f"--fsize={MAX_FILE_BYTES}",
            "--core=0",
            "--",
        ]
        if self.mode == "none":
            return [*limits, *argv]
        return [*limits, *_bwrap(argv[0], readable, writable), *argv]

    def check(self) -> None:
        """Run a tool inside the sandbox once; raise SandboxUnavailable with the reason."""
        if self.mode == "none":
            return
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: install it (Debian: bubblewrap), "
                "or set MEDIA_SANDBOX=none where the workers are contained otherwise"
            )
        result = subprocess.run(
            self.command(["ffprobe", "-version"], cpu_seconds=10),
            capture_output=True,
            timeout=30,
        )
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise SandboxUnavailable(
                f"bubblewrap cannot start the media tools here ({reason[0]}); namespaces "
                "may be forbidden (a container needs them allowed), or set MEDIA_SANDBOX=none"
            )


def _bwrap(tool: str, readable: Iterable[Path], writable: Iterable[Path]) -> list[str]:
    args = [
        "bwrap",
        "--unshare-all",  # network, PID, IPC, UTS, cgroup (and user, where allowed)
        # The tool itself is the namespace's PID 1 (it starts no processes to reap):
        # then the kernel accounts its CPU time to the worker, as for any child.
        "--as-pid-1",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in _ROOT_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for path in _ETC_NEEDED:
        args += ["--ro-bind-try", path, path]
    binary = shutil.which(tool)
    if binary and not binary.startswith("/usr/"):  # e.g. a static ffmpeg in /opt
        tool_dir = str(Path(binary).resolve().parent)
        args += ["--ro-bind", tool_dir, tool_dir]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for file in readable:
        real = str(Path(file).resolve())
        args += ["--ro-bind", real, real]
    last = None
    for folder in writable:
        last = str(Path(folder).resolve())
        args += ["--bind", last, last]
    # The sandbox's own root (a tmpfs holding the mount points) read-only too:
    # the work dir is the only place a tool can write, temporary files included.
    args += ["--remount-ro", "/"]
    if last is not None:
        args += ["--chdir", last, "--setenv", "TMPDIR", last]
    return [*args, "--"]
