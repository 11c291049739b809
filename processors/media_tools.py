"""One job's media tools: its upload, its work dir, its sandbox and limits.

Every ffmpeg and ffprobe run of the pipeline is built here, so none can
forget the input allowlist (`media_policy`) or the sandbox (`sandbox`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from upload_service.core.settings import Settings

from .media_policy import MEDIA_DEMUXERS, MediaLimits, input_args
from .sandbox import Sandbox


@dataclass(frozen=True)
class MediaTools:
    source: Path  # the upload: read-only in the sandbox
    work: Path | None = None  # the job's work dir: the only writable place
    sandbox: Sandbox = Sandbox()
    limits: MediaLimits = MediaLimits()

    @classmethod
    def for_job(cls, settings: Settings, source: Path, work: Path | None) -> MediaTools:
        return cls(
            # Absolute and resolved: the sandbox binds these exact paths.
            source=Path(source).resolve(),
            work=Path(work).resolve() if work is not None else None,
            sandbox=Sandbox.from_settings(settings),
            limits=MediaLimits.from_settings(settings),
        )

    def with_work(self, work: Path) -> MediaTools:
        return replace(self, work=Path(work).resolve())

    def input(self, demuxers: tuple[str, ...] = MEDIA_DEMUXERS) -> list[str]:
        """`-i` and its restrictions, for the upload."""
        return input_args(self.source, self.limits, demuxers)

    def input_options(self) -> dict[str, object]:
        """The same restrictions as ffmpeg-python input keywords."""
        args = self.input()[:-2]  # without "-i <file>"
        return {args[i].lstrip("-"): args[i + 1] for i in range(0, len(args), 2)}

    @property
    def input_name(self) -> str:
        return self.input()[-1]

    def command(self, argv: list[str], duration: float | None) -> list[str]:
        return self.sandbox.command(
            argv,
            cpu_seconds=self.limits.cpu_seconds(duration),
            readable=[self.source],
            writable=[self.work] if self.work is not None else [],
        )

    def run(
        self, argv: list[str], *, duration: float | None, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a short tool (a probe, a test decode) and collect its output."""
        return subprocess.run(
            self.command(argv, duration),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
