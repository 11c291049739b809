"""A child process of a supervisor dies with it.

`serve` with several processes (uvicorn's supervisor) and `worker` (Dramatiq's)
run their work in child processes. If the supervisor is SIGKILLed it cannot stop
them, and they would go on serving the listening socket or taking jobs with
nobody to restart or stop them. Linux's PR_SET_PDEATHSIG has the kernel send
the child a signal when its parent dies: SIGTERM, so that it shuts down as it
would on a normal stop (in-flight uploads record their offset and unlock).

PR_SET_PDEATHSIG fires when the thread that made the child exits: both
supervisors start (and restart) their children from their main thread.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal

log = logging.getLogger("upload_service.core.orphans")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """In a child of a multiprocessing supervisor: get `sig` when the supervisor dies.

    True when set. A process that is no multiprocessing child (a single-process
    `serve`, run by a shell or an init system) is left alone: its parent is not a
    supervisor whose death should stop it. Not Linux: False, nothing done.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # The supervisor may have died before the prctl: then nothing will signal us.
    if os.getppid() != parent.pid:
        os.kill(os.getpid(), sig)
    return True
