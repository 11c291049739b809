"""What a B2 publish knows of each file: its plan (name, size, SHA-1, type), the
order files go up in, whether a stored version already is it, and progress
over all of them."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2sdk.v2 import AbstractProgressListener, FileVersion

from upload_service.core.media_types import media_type_for

PublishItem = tuple[Path, str]


@dataclass
class Planned:
    path: Path
    name: str  # relative, as given
    key: str  # full object name in the bucket
    size: int
    sha1: str
    content_type: str

    @classmethod
    def of(cls, path: Path, name: str, key: str) -> Planned:
        path = Path(path)
        return cls(
            path=path,
            name=name,
            key=key,
            size=path.stat().st_size,
            sha1=file_sha1(path),
            # The server's fixed map: a name it does not know is bytes, never a page.
            content_type=media_type_for(name),
        )

    def is_stored_as(self, version: FileVersion) -> bool:
        """`version` in the bucket already is this file: nothing to upload."""
        return (
            version.action == "upload"
            and version.size == self.size
            and stored_sha1(version) == self.sha1
            and version.content_type == self.content_type
        )


def by_reference(items: list[PublishItem]) -> list[list[PublishItem]]:
    """Media, then the WebVTT files that name media, then the playlists that name both."""
    rank = {".vtt": 1, ".m3u8": 2}
    groups: list[list[PublishItem]] = [[], [], []]
    for item in items:
        groups[rank.get(Path(item[1]).suffix, 0)].append(item)
    return [group for group in groups if group]


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def stored_sha1(version: Any) -> str | None:
    """A large file's SHA-1 lives in its file info, a small one's in content_sha1."""
    sha1 = version.content_sha1
    if sha1 and sha1 != "none":
        return str(sha1)
    info = version.file_info or {}
    return info.get("large_file_sha1")


class Progress:
    """Bytes done over all files -> on_progress(percent), serialised, never backwards."""

    def __init__(self, total: int, on_progress: Callable[[float], None]) -> None:
        self.total = max(total, 1)
        self.on_progress = on_progress
        self.done: dict[str, int] = {}
        self.sum = 0  # of self.done's values, kept as we go: called per read
        self.reported = -1.0
        self.lock = threading.Lock()

    def set(self, name: str, nbytes: int) -> None:
        with self.lock:
            self.sum += nbytes - self.done.get(name, 0)
            self.done[name] = nbytes
            percent = min(100.0, 100.0 * self.sum / self.total)
            # Whole-percent steps: a status write per step, not per 8 KiB read.
            step = percent >= 100.0 or int(percent) > int(self.reported)
            if step and percent > self.reported:
                self.reported = percent
                self.on_progress(round(percent, 1))

    def finish(self) -> None:
        with self.lock:
            if self.reported < 100.0:
                self.reported = 100.0
                self.on_progress(100.0)


class FileListener(AbstractProgressListener):
    def __init__(self, progress: Progress, name: str) -> None:
        super().__init__()
        self.progress = progress
        self.name = name

    def set_total_bytes(self, total_byte_count: int) -> None:
        pass

    def bytes_completed(self, byte_count: int) -> None:
        self.progress.set(self.name, byte_count)
