"""Worker processes that die with their parent.

A pool worker outlives a parent killed with SIGKILL (a CI job's timeout, the OOM killer): it
keeps writing files on the storage under test and corrupts whatever runs next. On Linux a
process can ask the kernel to send it a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); pools call :func:`die_with_parent` as their initializer.
Elsewhere it does nothing (no such call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Have this process killed (SIGKILL) when its parent ``parent_pid`` dies, and die now if it
    already has (it may die between the fork and this call)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
