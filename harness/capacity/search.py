"""The capacity search, pure: which accelerator count to probe next, and the answer, from the
probes' results (running them is ``harness.capacity.orchestrate``'s job).

The counts are accelerators, or whole servers where a server shape is set (the caller multiplies
them out). The search grows the count geometrically (1, 2, 4, ...) until a probe fails, then
bisects between the last passing and the first failing count. A count passes when the median of
its probes' mean busy % reaches ``min_busy`` and the median of their lowest per-accelerator busy %
reaches ``min_busy_each``. The last passing and the first failing count are probed ``repeat``
times in all before the answer stands, so one noisy probe cannot move it: when the repeats turn
a verdict, the bracket moves and the search goes on.

The scenario's limiter comes from the judged probe (``Search.judged_probe``): of the count whose
verdict decided the answer (the first failing count; when none failed, the last passing one, as
in a capped search), the probe whose busy % is the median of that count's repeats (counted as
the verdict counts them: an incomplete probe or a missing figure is 0 %). With an even number of
repeats it is the lower median; equal busy % rank in probe order. So a first probe that the
repeats outvote names neither the answer nor the limiter.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from harness.scenario.capacity_settings import CapacitySettings

_DEFAULTS = CapacitySettings()


@dataclass(frozen=True)
class Probe:
    """One probe's numbers (a run folder's summary, in short)."""

    accelerators: int
    busy_pct: float | None
    busy_pct_min: float | None
    complete: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)  # context: MB/s, CPU, ...
    run: str | None = None  # the run folder
    limiter: str = ""  # what held it back (``harness.capacity.limiter``), with the evidence
    evidence: str = ""


@dataclass
class Search:
    """The search's state: ask ``next_count()``, probe it, ``record()`` the result, repeat."""

    min_busy: float = _DEFAULTS.min_busy
    min_busy_each: float = _DEFAULTS.min_busy_each
    max_accelerators: int = _DEFAULTS.max_accelerators
    repeat: int = 1
    probes: dict[int, list[Probe]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: CapacitySettings, per_server: int = 1) -> Search:
        """With ``per_server`` accelerators per server, the counts are servers: at most as many
        whole servers as ``max_accelerators`` holds (one at least)."""
        most = max(1, settings.max_accelerators // per_server)
        return cls(settings.min_busy, settings.min_busy_each, most, settings.repeat)

    def record(self, probe: Probe) -> None:
        self.probes.setdefault(probe.accelerators, []).append(probe)

    def passes(self, count: int) -> bool:
        """The verdict of a count on the medians of its probes (an incomplete probe fails)."""
        runs = self.probes[count]
        busy = [_counted_busy(p) for p in runs]
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

    def judged_count(self) -> int | None:
        """The count whose verdict decided the answer: the first failing count, or the last
        passing one when none failed (a capped search); None before any probe."""
        low, high = self.bracket()
        return high if high is not None else (low or None)

    def judged_probe(self) -> Probe | None:
        """The probe the scenario's limiter comes from: of the judged count's probes, the one
        whose busy % is the median (the lower median for an even number; equal busy % in probe
        order). None before any probe."""
        count = self.judged_count()
        if count is None:
            return None
        runs = self.probes[count]
        ranked = sorted(runs, key=_counted_busy)  # stable: equal busy % stay in probe order
        return ranked[(len(ranked) - 1) // 2]

    @property
    def answer(self) -> int:
        """The most accelerators that pass (0: one already fails)."""
        return self.bracket()[0]

    @property
    def capped(self) -> bool:
        """True when even ``max_accelerators`` passes: the answer is a lower bound."""
        low, high = self.bracket()
        return high is None and low >= self.max_accelerators


def _counted_busy(probe: Probe) -> float:
    """A probe's busy % as the verdict counts it: 0 when incomplete or not measured."""
    return probe.busy_pct if probe.complete and probe.busy_pct is not None else 0.0
