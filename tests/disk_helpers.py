"""A small real file system that fills up: a tmpfs of a few MiB.

These machines run the tests as root, and `mount -t tmpfs -o size=8m tmpfs DIR`
works directly (tried: no namespace or loop device needed). Were it refused
(a container without CAP_SYS_ADMIN), `unshare -m` around the test process or a
loop-mounted ext4 image would be the next things to try.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_tmpfs(directory: Path, size: str = "8m") -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True
    )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """A filler file taking all the room but `leave` bytes; remove it to free space."""
    filler = directory / "filler"
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def stray_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))
