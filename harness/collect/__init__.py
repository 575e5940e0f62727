"""Collectors: threads that sample real system counters at a fixed rate while a run trains.

One registry, ``COLLECTORS`` (``harness.registry``): name -> the module, imported only when a
scenario asks for it, whose ``collector(context)`` makes the collector. Each collector (see
``sampler.Collector``) has ``start``/``stop``, ``frame()`` (the time series, column ``t`` =
seconds since the run's ``t0`` on ``time.monotonic``) and ``summary(start, end)`` (metrics over
the measured window, each from ``harness.stats.metric``); ``cpu_seconds`` is what its own thread
cost; ``per_host`` says whether one process per machine
samples it (the GPUs: every rank would see all of them).

* ``io``  - procio.IoCollector: bytes read by the run's process tree; the dataset's disk (iostat's
            figures, diskstats) and NFS mount (READ calls, mountstats); the pipeline's cache
            misses (misses) and the network link's bytes where the mount is neither (mounts)
* ``cpu`` - cpu.CpuCollector: process-tree CPU and RSS, utilisation of every core
* ``gpu`` - gpu.GpuCollector: NVML utilisation, memory, PCIe, clocks, power, NVDEC, GPM
* ``prometheus`` - prometheus.PrometheusCollector: a server's Prometheus endpoint (node_exporter,
            NetApp Harvest), scraped at its own interval; optional, off unless enabled

"latency" is accepted and ignored here: latency is timed by the training loop, not sampled.
The io and cpu collectors share one view of the process tree (see proctree), so that it is
searched once for both. A new collector is one module and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from harness import registry
from harness.registry import CollectorFactory

if TYPE_CHECKING:
    from harness.collect.proctree import ProcessTree
    from harness.collect.sampler import Collector


@dataclass
class CollectorContext:
    """What every collector of one run is built from."""

    rate_hz: float
    t0: float
    root_pid: int
    dataset_path: Path  # the folder the run reads: the dataset's, or its frame cache's
    role: str = "dataset"  # what that folder is: "dataset" or "frame cache"
    # the host's counter of the pipeline's cache misses (``misses``); None: not counted
    missed_counter: Path | None = None
    # whether this process reports what the host shares (its first rank; the GPUs, the miss
    # counter): the others' figures would count the host again
    host_counters: bool = True
    # per collector, its scenario block as a dict (``collectors.prometheus``), for those that
    # take settings beyond the rate
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _tree: ProcessTree | None = field(default=None, repr=False)

    @property
    def tree(self) -> ProcessTree:
        """The run's process tree, searched once for every collector that needs it."""
        if self._tree is None:
            from harness.collect.proctree import ProcessTree

            self._tree = ProcessTree(self.root_pid)
        return self._tree


Factory: TypeAlias = "CollectorFactory[CollectorContext, Collector]"

COLLECTORS = registry.COLLECTORS  # name -> its module, whose collector(context) makes it
KNOWN = registry.COLLECTOR_NAMES  # what collectors.enabled may list ("latency": the loop's)
# sampled by one process per machine (local rank 0): what every rank would see the same
PER_HOST = frozenset({"gpu", "prometheus"})

__all__ = ["COLLECTORS", "KNOWN", "PER_HOST", "CollectorContext", "make_collectors"]


def make_collectors(
    names: Sequence[str],
    *,
    rate_hz: float,
    root_pid: int,
    dataset_path: Path,
    t0: float,
    role: str = "dataset",
    missed_counter: Path | None = None,
    host_counters: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Collector]:
    """Collectors for ``names`` (a subset of KNOWN), in the order given, each once.

    A source that does not work here (no NVML, no /proc/<pid>/io) still gives a collector, with
    ``unavailable`` saying why; only an unknown name is an error.
    """
    for name in names:
        if name not in KNOWN:
            raise ValueError(f"unknown collector {name!r}; known: {', '.join(KNOWN)}")
    context = CollectorContext(
        rate_hz,
        t0,
        root_pid,
        dataset_path,
        role,
        missed_counter,
        host_counters,
        dict(options or {}),
    )
    wanted = dict.fromkeys(name for name in names if name in COLLECTORS)
    return [cast(Factory, COLLECTORS.load(name)).collector(context) for name in wanted]
