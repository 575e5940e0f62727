"""Capacity: the most emulated accelerators this storage and this client keep busy, and what
stops the next one. Pure: the search is fed probe results, the limiter reads numbers; running
the probes is ``harness.commands.capacity``'s job.

The search grows the accelerator count geometrically (1, 2, 4, ...) until a probe fails, then
bisects between the last passing and the first failing count. A count passes when the median of
its probes' mean busy % reaches ``min_busy`` and the median of their lowest per-accelerator busy %
reaches ``min_busy_each``. The last passing and the first failing count are probed ``repeat``
times in all before the answer stands, so one noisy probe cannot move it: when the repeats turn
a verdict, the bracket moves and the search goes on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

FORMAT = "harness-capacity"
FORMAT_VERSION = 1
# The metrics of each probe that capacity.json records (numbers or null)
PROBE_METRICS = (
    "samples_per_s",
    "busy_pct",
    "busy_pct_min",
    "data_wait_pct",
    "barrier_pct",
    "read_MBps",
    "requested_MBps",
    "cpu_pct",
    "fetch_latency_p50_ms",
    "fetch_latency_p99_ms",
)
STORAGE_SHARE = 0.90  # read MB/s at or above this share of the ceiling: the storage is the limit
CPU_SHARE = 0.90  # client CPU busy at or above this share of its cores: the client is the limit
BARRIER_PCT = 5.0  # the stop vote taking this much of the wall time: synchronisation limits
PAGE_CACHE_SHARE = 0.5  # more than this share of the bytes asked for came from memory


@dataclass(frozen=True)
class Probe:
    """One probe's numbers (a run folder's summary, in short)."""

    accelerators: int
    busy_pct: float | None
    busy_pct_min: float | None
    complete: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)  # context: MB/s, CPU, ...
    run: str | None = None  # the run folder


@dataclass
class Search:
    """The search's state: ask ``next_count()``, probe it, ``record()`` the result, repeat."""

    min_busy: float = 90.0
    min_busy_each: float = 85.0
    max_accelerators: int = 64
    repeat: int = 1
    probes: dict[int, list[Probe]] = field(default_factory=dict)

    def record(self, probe: Probe) -> None:
        self.probes.setdefault(probe.accelerators, []).append(probe)

    def passes(self, count: int) -> bool:
        """The verdict of a count on the medians of its probes (an incomplete probe fails)."""
        runs = self.probes[count]
        busy = [p.busy_pct if p.complete and p.busy_pct is not None else 0.0 for p in runs]
        least = [p.busy_pct_min if p.complete and p.busy_pct_min is not None else 0.0 for p in runs]
        return (
            statistics.median(busy) >= self.min_busy
            and statistics.median(least) >= self.min_busy_each
        )

    def bracket(self) -> tuple[int, int | None]:
        """(the largest passing count below the first failing one (0: none), the first failing
        count or None)."""
        failing = [n for n in self.probes if not self.passes(n)]
        first_failing = min(failing) if failing else None
        passing = [
            n
            for n in self.probes
            if self.passes(n) and (first_failing is None or n < first_failing)
        ]
        return (max(passing) if passing else 0), first_failing

    def next_count(self) -> int | None:
        """The count to probe next, None when the answer stands."""
        low, high = self.bracket()
        if high is None and low < self.max_accelerators:
            return min(2 * low if low else 1, self.max_accelerators)
        if high is not None and high - low > 1:
            return (low + high) // 2
        for count in (low, high):
            if count and count <= self.max_accelerators and len(self.probes[count]) < self.repeat:
                return count
        return None

    @property
    def answer(self) -> int:
        """The most accelerators that pass (0: one already fails)."""
        return self.bracket()[0]

    @property
    def capped(self) -> bool:
        """True when even ``max_accelerators`` passes: the answer is a lower bound."""
        low, high = self.bracket()
        return high is None and low >= self.max_accelerators


@dataclass(frozen=True)
class Limiter:
    name: str  # storage | client CPU | synchronisation | page cache | harness | none
    evidence: str


def name_limiter(
    metrics: dict[str, Any],
    *,
    passed: bool,
    ceiling_MBps: float | None,
    ceiling_how: str,
    cores: int,
    dataset_bytes: int | None,
    page_cache_bytes: int | None,
    accelerators: int = 1,
    workers: int = 1,
) -> Limiter:
    """What held this probe back, from what it measured, with the evidence in numbers.

    In order: the storage (its read rate at the ceiling), the client's CPU (the cores the
    pipeline can use saturated: each accelerator's workers, at most the client's cores),
    synchronisation (the stop vote's share of the time); then the page cache (it served most
    reads of a dataset that fits in memory: not a storage result), and otherwise the harness
    itself (nothing is saturated, yet the accelerators wait). A limiter found while the page
    cache served most reads says so too. A passing probe names what is closest to its limit."""
    read = _value(metrics, "read_MBps")
    requested = _value(metrics, "requested_MBps")
    cpu = _value(metrics, "cpu_pct")
    barrier = _value(metrics, "barrier_pct")
    wait = _value(metrics, "data_wait_pct")
    served = None if read is None or not requested else max(0.0, 1 - read / requested)
    from_memory = (
        dataset_bytes is not None
        and page_cache_bytes is not None
        and dataset_bytes < page_cache_bytes
        and served is not None
        and served > PAGE_CACHE_SHARE
    )
    found = _saturated(read, ceiling_MBps, ceiling_how, cpu, cores, accelerators, workers, barrier)
    if found is not None:
        if from_memory:
            found = Limiter(
                found.name,
                f"{found.evidence}; {served:.0%} of the bytes asked for came from memory, so "
                "the storage itself was not measured",
            )
        return found
    if from_memory:
        return Limiter(
            "page cache",
            f"{served:.0%} of the bytes asked for came from memory and the dataset "
            f"({dataset_bytes / 1e9:.2f} GB) fits in the page cache ({page_cache_bytes / 1e9:.1f} "
            "GB): this is not a storage result. MLPerf Storage asks for a dataset of at least 5x "
            "the clients' RAM; generate a larger one (or limit the client's memory)",
        )
    if passed:
        return Limiter("none", _headroom(read, ceiling_MBps, cpu, cores))
    return Limiter(
        "harness",
        f"the accelerators waited for data {wait or 0:.1f} % and for each other "
        f"{barrier or 0:.1f} % of the time while neither the storage nor the CPU was saturated "
        f"({_headroom(read, ceiling_MBps, cpu, cores)}): too few reads in flight; more "
        "pipeline.workers, or pipeline.read_threads for files read whole",
    )


def _saturated(
    read: float | None,
    ceiling: float | None,
    ceiling_how: str,
    cpu: float | None,
    cores: int,
    accelerators: int,
    workers: int,
    barrier: float | None,
) -> Limiter | None:
    if read is not None and ceiling:
        share = read / ceiling
        if share >= STORAGE_SHARE:
            return Limiter(
                "storage",
                f"read {read:.1f} MB/s, {share:.0%} of the {ceiling:.1f} MB/s ceiling "
                f"({ceiling_how})",
            )
    usable = min(cores, accelerators * max(1, workers)) if cores else 0
    if cpu is not None and usable:
        share = cpu / (100.0 * usable)
        if share >= CPU_SHARE:
            more = (
                ""
                if usable == cores
                else f"; more pipeline.workers would use the other {cores - usable} core(s)"
            )
            return Limiter(
                "client CPU",
                f"the run's processes used {cpu:.0f} % of a core, {share:.0%} of the {usable} "
                f"core(s) its {accelerators} x {max(1, workers)} workers can use (decode, crop "
                f"and collate){more}",
            )
    if accelerators > 1 and barrier is not None and barrier >= BARRIER_PCT:
        return Limiter(
            "synchronisation",
            f"the stop vote between accelerators took {barrier:.1f} % of the wall time "
            "(each step waits for the slowest accelerator)",
        )
    return None


def _headroom(read: float | None, ceiling: float | None, cpu: float | None, cores: int) -> str:
    parts = []
    if read is not None and ceiling:
        parts.append(f"read {read:.1f} of {ceiling:.1f} MB/s")
    if cpu is not None and cores:
        parts.append(f"CPU {cpu:.0f} % of {100 * cores} %")
    return ", ".join(parts) or "no resource measured"


def _value(metrics: dict[str, Any], name: str) -> float | None:
    entry = metrics.get(name)
    if isinstance(entry, dict):
        entry = entry.get("value")
    return None if entry is None else float(entry)
