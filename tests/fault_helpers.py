"""Helpers of the fault tests: processes looked up and waited on, and (fault_proxy) a
TCP proxy that breaks connections on purpose."""

from __future__ import annotations

import socket
from pathlib import Path


def children_of(pid: int, cmdline_marker: bytes) -> list[int]:
    """`pid`'s child processes whose command line holds `cmdline_marker` (b"": all)."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = []
    for child in listed:
        try:
            if cmdline_marker in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:
            continue
    return found


def process_gone(pid: int) -> bool:
    """Exited (a zombie waiting for its reaper counts as gone: it runs nothing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def serving(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False
