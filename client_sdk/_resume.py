"""Where resumable uploads are remembered: file fingerprints -> upload URLs, in JSON.

The file is tiny and rewritten atomically (temp file + rename), so a process killed
mid-write leaves the old version, and two processes at worst lose each other's
latest entry (which only costs a fresh upload, never a wrong one).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import IO

from tusclient.fingerprint.interface import Fingerprint
from tusclient.storage.interface import Storage

SAMPLE = 1024 * 1024  # the first and last MiB stand for the whole file


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "media-upload"


class SampleFingerprint(Fingerprint):
    """Size + SHA-256 of the first and last MiB + the endpoint.

    Content-based rather than path-based so that a renamed or copied file still
    resumes; the endpoint is part of it so one file sent to two servers gets two
    entries. Reading 2 MiB is cheap next to uploading the file.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def get_fingerprint(self, fs: IO[bytes]) -> str:
        fs.seek(0, os.SEEK_END)
        size = fs.tell()
        digest = hashlib.sha256(self.endpoint.encode() + b"\0" + str(size).encode() + b"\0")
        fs.seek(0)
        digest.update(fs.read(SAMPLE))
        if size > SAMPLE:
            fs.seek(max(SAMPLE, size - SAMPLE))
            digest.update(fs.read(SAMPLE))
        fs.seek(0)
        return f"size:{size}-sha256:{digest.hexdigest()[:40]}"


class JSONURLStore(Storage):
    """tuspy's URL storage interface over one small JSON file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "uploads.json"
        if self.path.is_dir() or (path is not None and not self.path.suffix):
            self.path = self.path / "uploads.json"

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, dict[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def get_item(self, key: str) -> str | None:
        entry = self._load().get(key)
        url = entry.get("url") if isinstance(entry, dict) else None
        return url if isinstance(url, str) else None

    def set_item(self, key: str, value: str) -> None:
        data = self._load()
        data[key] = {"url": value, "saved_at": int(time.time())}
        self._save(data)

    def remove_item(self, key: str) -> None:
        data = self._load()
        if data.pop(key, None) is not None:
            self._save(data)

    def items(self) -> dict[str, str]:
        return {k: str(v.get("url")) for k, v in self._load().items() if isinstance(v, dict)}
