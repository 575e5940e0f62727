"""CPU: the run's process tree (as % of one core, may exceed 100) and every core of the machine.

Tree CPU is utime + stime + cutime + cstime from /proc/<pid>/stat over the tree (clock ticks of
SC_CLK_TCK, usually 10 ms): cutime/cstime carry the CPU time of children the member reaped, so
short-lived workers count in full (see proctree). Tree RSS is the sum of the members' resident
pages (field 24 of /proc/<pid>/stat, the same count as the second field of statm, read in the
same call); pages shared between forked workers count once per process, as in ``ps``.

A core is busy for user + nice + system + irq + softirq + steal of /proc/stat and idle for
idle + iowait; its utilisation is busy / (busy + idle) between two samples.

The data pipeline's share, ``pipeline_cpu_pct``: the CPU of the tree's DataLoader workers, told
apart by their command name (``harness.lifeline.DATA_WORKER_NAME``, set as they start): what the
client spends reading, decoding and collating for its accelerators, as opposed to the ranks'
loops and the harness's own collectors. None where no worker ran (``workers: 0``, DALI, nvdec).

Frame columns: t, cpu_pct (tree, from the previous sample), cpu_s (tree CPU seconds since the
first sample), pipeline_cpu_s (the data workers'), cpu_cores_pct (mean over cores), rss_MiB
(tree), procs (live tree members), pipeline_procs (live data workers), and one
``cpu_core_pct[N]`` column per core (wide, named like the summary metrics).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from harness.collect import CollectorContext
from harness.collect.proctree import ProcessTree, TreeCounters
from harness.collect.sampler import Collector, ProcFile, per_sample_rate, read_small
from harness.lifeline import DATA_WORKER_NAME
from harness.stats import counter_rate, metric, window_mean

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORE_COLUMNS = 6  # the raw columns before the per-core ones
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MiB = 2**20


_DATA_WORKER = b"(" + DATA_WORKER_NAME.encode()[:15]  # as "PID (NAME" starts the stat line


def parse_stat(data: bytes) -> tuple[int, int, int, int]:
    """(utime + stime + cutime + cstime in ticks, the same if the process is a data worker else
    0, rss in pages, 1 if a data worker else 0) from /proc/<pid>/stat."""
    # fields after the command name; field 3 (state) is index 0, so field N is index N - 3
    head, _, tail = data.rpartition(b")")
    fields = tail.split()
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    worker = head.partition(b" ")[2] == _DATA_WORKER
    return ticks, ticks if worker else 0, int(fields[21]), int(worker)


def parse_cores(data: bytes) -> dict[int, tuple[int, int]]:
    """core -> (busy ticks, total ticks) from /proc/stat."""
    cores = {}
    for line in data.split(b"\n"):
        if not line.startswith(b"cpu") or not line[3:4].isdigit():
            continue
        fields = line.split()
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
        busy = user + nice + system + irq + softirq + steal
        cores[int(fields[0][3:])] = (busy, busy + idle + iowait)
    return cores


class CpuCollector(Collector):
    name = "cpu"

    def __init__(
        self, *, rate_hz: float, t0: float, root_pid: int, tree: ProcessTree | None = None
    ) -> None:
        reason: str | None = None
        try:
            with open("/proc/stat", "rb") as stat:
                self.cores = sorted(parse_cores(stat.read()))
        except OSError as err:
            self.cores, reason = [], f"cannot read /proc/stat: {err.strerror}"
        core_columns = [f"cpu_core_pct[{core}]" for core in self.cores]
        super().__init__(
            rate_hz=rate_hz,
            t0=t0,
            columns=(
                "t", "cpu_s", "pipeline_cpu_s", "rss_MiB", "procs", "pipeline_procs", *core_columns
            ),
        )  # fmt: skip
        self.root_pid = root_pid
        self._stat: ProcFile | None = None
        if reason is None and not read_small(f"/proc/{root_pid}/stat"):
            reason = f"process {root_pid} not found"
        self.unavailable = reason
        if reason is not None:
            return
        self._stat = ProcFile("/proc/stat")
        self._tree = tree or ProcessTree(root_pid)
        self._counters = TreeCounters(
            self._tree,
            "stat",
            parse_stat,
            counters=2,
            gauges=2,
            # a reaped worker's CPU goes to its rank's cutime: the tree's, not the pipeline's
            moves_to_parent=(True, False),
        )
        self._previous: dict[int, tuple[int, int]] = {}

    def _sample(self) -> None:
        t = self._now()
        (ticks, pipeline_ticks), (rss_pages, workers), procs = self._counters.sample()
        assert self._stat is not None
        now = parse_cores(self._stat.read())
        previous, self._previous = self._previous, now
        row = [
            t,
            ticks / CLK_TCK,
            pipeline_ticks / CLK_TCK,
            rss_pages * PAGE_BYTES / MiB,
            procs,
            workers,
        ]
        for core in self.cores:
            pct = math.nan
            if core in now and core in previous:
                busy = now[core][0] - previous[core][0]
                total = now[core][1] - previous[core][1]
                if total > 0:
                    pct = 100.0 * busy / total
            row.append(pct)
        self._record(row)

    def _close(self) -> None:
        self._counters.close()
        if self._stat is not None:
            self._stat.close()
            self._stat = None

    def _build_frame(self, raw: np.ndarray) -> pd.DataFrame:
        t, cpu_s, pipeline_cpu_s = raw[:, 0], raw[:, 1], raw[:, 2]
        rss, procs, workers = raw[:, 3], raw[:, 4], raw[:, 5]
        per_core = raw[:, CORE_COLUMNS:]
        finite = np.isfinite(per_core)
        counts = finite.sum(axis=1)
        sums = np.where(finite, per_core, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cores_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        columns = {
            "t": t,
            "cpu_pct": per_sample_rate(t, cpu_s) * 100.0,
            "cpu_s": cpu_s,
            "pipeline_cpu_pct": per_sample_rate(t, pipeline_cpu_s) * 100.0,
            "pipeline_cpu_s": pipeline_cpu_s,
            "cpu_cores_pct": cores_mean,
            "rss_MiB": rss,
            "procs": procs,
            "pipeline_procs": workers,
        }
        for i, name in enumerate(self.columns[CORE_COLUMNS:]):
            columns[name] = per_core[:, i]
        return pd.DataFrame(columns)

    def summary(self, start: float, end: float) -> dict[str, dict]:
        if self.unavailable is not None:
            return {}
        frame = self.frame()
        t = frame["t"].to_numpy()
        busy = counter_rate(t, frame["cpu_s"].to_numpy(), start, end)
        inside = (t >= start) & (t <= end)
        rss = frame["rss_MiB"].to_numpy()[inside]
        pipeline = None
        if (frame["pipeline_procs"].to_numpy()[inside] > 0).any():  # else no worker to count
            pipeline = counter_rate(t, frame["pipeline_cpu_s"].to_numpy(), start, end)
        found = {
            # the exact time-weighted mean over the window: CPU seconds / wall seconds
            "cpu_pct": metric(None if busy is None else busy * 100.0, "% of a core", "context"),
            "pipeline_cpu_pct": metric(
                None if pipeline is None else pipeline * 100.0, "% of a core", "context"
            ),
            "cpu_cores_pct": metric(
                window_mean(t, frame["cpu_cores_pct"].to_numpy(), start, end), "%", "context"
            ),
            "rss_MiB": metric(float(rss.max()) if rss.size else None, "MiB", "context"),
        }
        for name in self.columns[CORE_COLUMNS:]:
            found[name] = metric(window_mean(t, frame[name].to_numpy(), start, end), "%", "context")
        return found


def collector(context: CollectorContext) -> CpuCollector:
    """The registry's entry (``harness.registry.COLLECTORS``: "cpu")."""
    return CpuCollector(
        rate_hz=context.rate_hz, t0=context.t0, root_pid=context.root_pid, tree=context.tree
    )
