"""Collectors: threads that sample real system counters at a fixed rate while a run trains.

``make_collectors`` builds the ones a scenario names. Each collector (see ``sampler.Collector``)
has ``start``/``stop``, ``frame()`` (the time series, column ``t`` = seconds since the run's
``t0`` on ``time.monotonic``) and ``summary(start, end)`` (metrics over the measured window, each
from ``harness.stats.metric``); ``cpu_seconds`` is what its own thread cost.

* ``io``  - procio.IoCollector: bytes read by the run's process tree and the dataset's disk
* ``cpu`` - cpu.CpuCollector: process-tree CPU and RSS, utilisation of every core
* ``gpu`` - gpu.GpuCollector: NVML utilisation, memory, PCIe, clocks, power, NVDEC, GPM

"latency" is accepted and ignored here: latency is timed by the training loop, not sampled.
The io and cpu collectors share one view of the process tree (see proctree), so that it is
searched once for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.collect.sampler import Collector

KNOWN = ("gpu", "io", "cpu", "latency")

__all__ = ["KNOWN", "Collector", "make_collectors"]


def make_collectors(
    names: Sequence[str], *, rate_hz: float, root_pid: int, dataset_path: Path, t0: float
) -> list[Collector]:
    """Collectors for ``names`` (a subset of KNOWN), in the order given, each once.

    A source that does not work here (no NVML, no /proc/<pid>/io) still gives a collector, with
    ``unavailable`` saying why; only an unknown name is an error.
    """
    for name in names:
        if name not in KNOWN:
            raise ValueError(f"unknown collector {name!r}; known: {', '.join(KNOWN)}")
    wanted = [name for i, name in enumerate(names) if name != "latency" and name not in names[:i]]
    tree = None
    if "io" in wanted or "cpu" in wanted:
        from harness.collect.proctree import ProcessTree

        tree = ProcessTree(root_pid)
    collectors: list[Collector] = []
    for name in wanted:
        if name == "io":
            from harness.collect.procio import IoCollector

            collectors.append(
                IoCollector(
                    rate_hz=rate_hz, t0=t0, root_pid=root_pid, dataset_path=dataset_path, tree=tree
                )
            )
        elif name == "cpu":
            from harness.collect.cpu import CpuCollector

            collectors.append(CpuCollector(rate_hz=rate_hz, t0=t0, root_pid=root_pid, tree=tree))
        else:
            from harness.collect.gpu import GpuCollector

            collectors.append(GpuCollector(rate_hz=rate_hz, t0=t0))
    return collectors
