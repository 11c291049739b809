"""A full disk, told apart from other OS errors, and how much room is left.

ENOSPC (and EDQUOT, a quota's full disk) is the machine's trouble, never the
client's or the file's: the server answers it with `507 insufficient_storage`
(bytes already stored are kept), the workers retry the job later, and `/readyz`
reports the data dir below UPLOAD_MIN_FREE_BYTES before it comes to that.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def free_bytes(path: Path | str) -> int:
    """Bytes an unprivileged writer may still use on `path`'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
