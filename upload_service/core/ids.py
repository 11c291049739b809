"""The upload id rule, and the one way an id becomes a file path.

Upload ids are opaque and URL-safe; anything else names no upload. Routes
check the rule first (`is_safe_id`, a 4xx); every place that joins an id onto
a directory goes through `safe_child` as well, so that a route that forgot
the check still cannot be walked out of its directory.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class UnsafeId(ValueError):
    """An id that is not an upload id: never joined onto a path."""


def is_safe_id(upload_id: str) -> bool:
    # fullmatch, not match + "$": "$" also matches before a trailing newline.
    return isinstance(upload_id, str) and _SAFE_ID.fullmatch(upload_id) is not None


def new_upload_id() -> str:
    """22 URL-safe characters (128 random bits), never starting with "-": an id is
    often an argument on a command line, where a leading "-" reads as an option."""
    while True:
        upload_id = secrets.token_urlsafe(16)
        if not upload_id.startswith("-"):
            return upload_id


def checked_id(upload_id: str) -> str:
    """`upload_id`, or UnsafeId for anything but an upload id."""
    if not is_safe_id(upload_id):
        raise UnsafeId(f"not an upload id: {upload_id!r}")
    return upload_id


def safe_child(root: Path, upload_id: str, suffix: str = "") -> Path:
    """`root/<upload_id><suffix>`, or UnsafeId for anything but an upload id."""
    return Path(root) / f"{checked_id(upload_id)}{suffix}"
