"""Worker processes that die with their parent, and name themselves.

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

# The command name (``/proc/PID/comm``) of a DataLoader worker: the cpu collector sums these
# processes apart (``pipeline_cpu_pct``, the client's data pipeline), and ``top`` shows them.
DATA_WORKER_NAME = "harness-data"


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


def name_this_process(name: str) -> None:
    """Set this process's command name (at most 15 bytes, as the kernel keeps it; Linux only)."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass  # not Linux, or /proc not mounted: the process keeps its name
