"""The run's process tree (root and all descendants) and counters summed over it.

Finding the tree: ``/proc/<pid>/task/<tid>/children`` of every thread of every member (children
hang off the thread that forked them), which costs a few reads per member. Kernels built
without CONFIG_PROC_CHILDREN lack that file; there the tree comes from the ppid in
``/proc/<pid>/stat``, read once per new pid (the table of all pids is listed, but only pids not
seen before are read). The search runs as often as every MIN_REFRESH_S, less often when it is
costly (many threads), so that it never takes more than REFRESH_BUDGET of a core; between
searches the members' own files tell whether they are still there. Nothing is lost by finding a
member late: its counters start at zero when it forks, so its first reading holds all it did,
and a child reaped before it was seen is counted through its reaper's counters.

Summing cumulative counters (bytes read, CPU time) over a tree whose members come and go needs
care, because Linux already moves a child's totals into its parent when the parent reaps it:
``/proc/<pid>/io`` includes reaped children's I/O and ``cutime``/``cstime`` their CPU time. So:

* a member still present counts with its own counter (which includes the children it reaped);
* a member that went away while its parent is a live member was absorbed by that parent:
  adding its last value again would count it twice;
* a member whose reaper is outside the tree (the root itself, or an orphan re-parented to init)
  keeps the last value seen, so the totals never lose it.

Children reaped by a tree member are therefore counted in full even if they lived too briefly to
be seen. Residual error: an orphan's I/O between the last sample and its exit (at most one
period), an orphan whose parent exited before a search saw it (its reaper is outside the tree,
so it is never found), and children whose parent ignores SIGCHLD (auto-reaped: their totals go
nowhere).
The totals are finally kept monotonic, which hides a one-tick dip when a reap races the reads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from harness.collect.sampler import read_small


def read_ppid(pid: int) -> int | None:
    """Parent pid from /proc/<pid>/stat (field 4); None when the process has gone."""
    data = read_small(f"/proc/{pid}/stat")
    if not data:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    return int(data.rpartition(b")")[2].split(None, 2)[1])


def children_files_exist(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


MIN_REFRESH_S = 0.05
REFRESH_BUDGET = 0.0025  # the share of one core that searching for new members may take


class ProcessTree:
    """Members of the tree rooted at ``root_pid``, each with its parent.

    The parent is None for the root and for a member whose current parent is outside the tree
    (an orphan re-parented to init): its totals will not be absorbed by another member.
    Thread-safe, so that the io and cpu collectors share one search.
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.mode = "children" if children_files_exist(root_pid) else "scan"
        self._lock = threading.Lock()
        self._parents: dict[int, int | None] = {}
        self._system: dict[int, int] = {}  # scan mode: pid -> ppid of every process seen
        self._refreshed_at = -float("inf")
        self._searches = 0
        self._search_cost = 0.0  # CPU seconds per search, smoothed
        self.interval = MIN_REFRESH_S

    def members(self) -> dict[int, int | None]:
        """pid -> parent of every member, parents before their children, as of the last search
        (some may have exited since); searched again once ``interval`` has passed."""
        with self._lock:
            now = time.monotonic()
            if now - self._refreshed_at >= self.interval:
                began = time.thread_time()
                if self.mode == "children":
                    self._refresh_children()
                else:
                    self._refresh_scan()
                cost = time.thread_time() - began
                self._refreshed_at = now
                self._searches += 1
                if self._searches > 1:  # the first search (in scan mode: of all pids) is special
                    smooth = self._search_cost
                    self._search_cost = cost if self._searches == 2 else 0.7 * smooth + 0.3 * cost
                    self.interval = max(MIN_REFRESH_S, self._search_cost / REFRESH_BUDGET)
            return dict(self._parents)

    # ------------------------------------------------------------ children files
    def _refresh_children(self) -> None:
        found: dict[int, int | None] = {}
        # the root, then members no longer reachable from it but still alive: orphans
        # re-parented outside the tree, which with their descendants still belong to the run
        for top in (self.root_pid, *self._parents):
            if top not in found:
                self._walk(found, top)
        self._parents = found

    def _walk(self, found: dict[int, int | None], top: int) -> None:
        children = self._children_of(top)
        if children is None:  # gone
            return
        found[top] = None
        queue = [(top, children)]
        while queue:
            pid, children = queue.pop()
            for child in children:
                if child not in found:
                    grandchildren = self._children_of(child)
                    if grandchildren is not None:
                        found[child] = pid
                        queue.append((child, grandchildren))

    @staticmethod
    def _children_of(pid: int) -> list[int] | None:
        """Children of every thread of ``pid``; None when the process has gone."""
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return None
        children: list[int] = []
        for tid in tids:
            data = read_small(f"/proc/{pid}/task/{tid}/children")
            if data:
                children.extend(int(c) for c in data.split())
        return children

    # ------------------------------------------------------------------ scanning
    def _refresh_scan(self) -> None:
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        alive = {int(name) for name in names if name.isdigit()}
        system = self._system
        for pid in system.keys() - alive:
            del system[pid]
        new = alive - system.keys()
        for pid in new:
            ppid = read_ppid(pid)
            if ppid is not None:
                system[pid] = ppid
        previous = self._parents
        found: dict[int, int | None] = {}
        if self.root_pid in system:
            found[self.root_pid] = None
        for pid, parent in previous.items():
            if pid in found or pid not in system:
                continue
            if parent is not None and parent not in system:  # its parent died: re-parented
                ppid = read_ppid(pid)
                if ppid is None:
                    continue
                system[pid] = ppid
                parent = ppid if ppid in found else None
            found[pid] = parent
        # new processes whose parent is a member (a child and its grandchild may both be new)
        pending = [pid for pid in new if pid in system and pid not in found]
        pending.sort()
        while pending:
            left = []
            for pid in pending:
                if system[pid] in found:
                    found[pid] = system[pid]
                else:
                    left.append(pid)
            if len(left) == len(pending):
                break
            pending = left
        self._parents = found


class TreeCounters:
    """Cumulative counters (and instantaneous gauges) summed over a ProcessTree.

    ``parse`` turns the text of ``/proc/<pid>/<filename>`` into ``counters`` cumulative values
    then ``gauges`` instantaneous ones (such as RSS, summed over live members only).
    ``sample()`` returns (counter totals since the first sample, gauge sums, live member count).
    A counter that is not ``moves_to_parent`` stays with the member that counted it when the
    member is reaped (a part of the tree's total whose parent does not belong to it: the CPU
    of the data workers, which a rank's ``cutime`` takes over but not the rank's share of it).

    Each member's file stays open while the member lives and is re-read with pread: that halves
    the cost of a read, and is safe against pid reuse, because an open /proc file stays bound to
    its process (reads fail with ESRCH once it has been reaped, whatever takes its pid). One
    descriptor per member is held, closed when the member goes and by ``close()``.
    """

    def __init__(
        self,
        tree: ProcessTree,
        filename: str,
        parse: Callable[[bytes], tuple[int, ...]],
        counters: int,
        gauges: int = 0,
        moves_to_parent: tuple[bool, ...] | None = None,
    ) -> None:
        self.tree = tree
        self._filename = filename
        self._parse = parse
        self._counters = counters
        self._gauges = gauges
        self._moves = moves_to_parent or (True,) * counters
        self._files: dict[int, int] = {}
        self._last: dict[int, tuple[int, ...]] = {}
        self._parents: dict[int, int | None] = {}
        self._kept = [0] * counters
        self._baseline: list[int] | None = None
        self._reported: list[int] | None = None

    def _read(self, pid: int) -> tuple[int, ...] | None:
        fd = self._files.get(pid)
        try:
            if fd is None:
                fd = self._files[pid] = os.open(
                    f"/proc/{pid}/{self._filename}", os.O_RDONLY | os.O_CLOEXEC
                )
            data = os.pread(fd, 4096, 0)
        except OSError:  # gone (ENOENT on open, ESRCH on read)
            data = b""
        if data:
            return self._parse(data)
        if fd is not None:
            os.close(self._files.pop(pid))
        return None

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def sample(self) -> tuple[list[int], list[int], int]:
        members = self.tree.members()
        current: dict[int, tuple[int, ...]] = {}
        for pid in members:  # parents before children: a reap between reads dips, never doubles
            values = self._read(pid)
            if values is not None:
                current[pid] = values
        for pid in self._files.keys() - members.keys():
            os.close(self._files.pop(pid))
        gone = self._last.keys() - current.keys()
        for pid in gone:
            absorbed = self._absorbed(pid, current, gone)
            for i, value in enumerate(self._last[pid][: self._counters]):
                if not (absorbed and self._moves[i]):
                    self._kept[i] += value
        n = self._counters
        totals = list(self._kept)
        gauges = [0] * self._gauges
        for values in current.values():
            for i in range(n):
                totals[i] += values[i]
            for i in range(len(gauges)):
                gauges[i] += values[n + i]
        self._last = current
        self._parents = {pid: members[pid] for pid in current}
        if self._baseline is None:
            self._baseline = list(totals)
        if self._reported is not None:  # never backwards (see the module notes)
            totals = [max(a, b) for a, b in zip(totals, self._reported, strict=True)]
        self._reported = totals
        return [a - b for a, b in zip(totals, self._baseline, strict=True)], gauges, len(current)

    def _absorbed(self, pid: int, current: dict[int, tuple[int, ...]], gone: set[int]) -> bool:
        """Whether a member that went away was reaped inside the tree (its totals moved to a
        live member). When parent and child vanished in the same period, assume the child died
        first, as it does when a worker pool shuts down."""
        seen = {pid}
        parent = self._parents.get(pid)
        while parent is not None and parent not in seen:
            if parent in current:
                return True
            if parent not in gone:
                return False
            seen.add(parent)
            parent = self._parents.get(parent)
        return False
