"""A scratch file for bytes waiting to become a B2 part: bounded memory, whatever the part size."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import BinaryIO

READ_BLOCK = 1024 * 1024


class Spool:
    """The bytes not yet in a part: a scratch file, never a whole part in memory."""

    def __init__(self, directory: str | None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="b2tail-", dir=directory)
        self.file: BinaryIO = os.fdopen(fd, "w+b")
        self.size = 0

    def append(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def split(self, at: int, directory: str | None) -> Spool:
        """Keep the first `at` bytes here; the rest move to a new spool."""
        rest = Spool(directory)
        self.file.seek(at)
        while block := self.file.read(READ_BLOCK):
            rest.append(block)
        self.file.truncate(at)
        self.file.flush()
        self.size = at
        return rest

    def sha1(self) -> str:
        self.file.flush()
        self.file.seek(0)
        digest = hashlib.sha1()
        while block := self.file.read(READ_BLOCK):
            digest.update(block)
        return digest.hexdigest()

    def close(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
