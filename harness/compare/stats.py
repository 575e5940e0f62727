"""Regression verdicts: pure statistics on per-repeat metric values, no I/O, tested on their own.

A change is called a regression (or an improvement) only when it is both **large** (beyond the
metric's tolerance, in per cent of the baseline, and beyond an absolute floor for metrics that sit
near zero) and **significant** (a two-sided Mann-Whitney U test on the per-repeat values), as asv
does: a large but noisy change, or a tiny but consistent one, is not worth failing a build for.

What significance can mean depends on the number of repeats. The exact two-sided p of a
Mann-Whitney U test can never be smaller than 2 / C(n + m, n): 0.1 with 3 + 3 runs, 0.029 with
4 + 4, 0.008 with 5 + 5. When that floor is above alpha no test can succeed, so a change beyond
the tolerance is reported ``inconclusive`` with the reason, never silently passed. With a single
run on either side there is nothing to test: the tolerance alone decides, and the verdict's
``method`` says so. The test itself is in ``harness.compare.mannwhitney``.

Verdicts (``Verdict.outcome``):

* ``ok``           - within the tolerance (or below the absolute floor)
* ``regressed``    - beyond the tolerance in the worse direction, and significant (or single runs)
* ``improved``     - the same in the better direction
* ``inconclusive`` - beyond the tolerance but not significant, or the repeats cannot be; or the
  two sides are not comparable (units or directions differ)
* ``context``      - a fact about the run (direction "context", such as MB/s read): reported with
  its change, never judged
* ``missing``      - not measured on one side (absent, or None in every run): listed, never zero
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from harness.compare.mannwhitney import mann_whitney_u, repeats_needed, smallest_p_value

Outcome = Literal["ok", "regressed", "improved", "inconclusive", "context", "missing"]
OUTCOMES: tuple[Outcome, ...] = (
    "ok",
    "regressed",
    "improved",
    "inconclusive",
    "context",
    "missing",
)
DIRECTIONS = ("higher", "lower", "context")
DEFAULT_ALPHA = 0.05

METHOD_TEST = "mann-whitney"  # tolerance and a two-sided Mann-Whitney U test
METHOD_TOLERANCE = "tolerance only"  # a single run on a side: nothing to test
METHOD_NONE = "not judged"  # context, missing or not comparable

# Tolerances in per cent of the baseline value, by metric name (an indexed metric such as
# ``gpu_util_pct[0]`` or ``busy_pct[rank1]`` falls back to its base name). 10 % for the headline
# numbers, as asv's default; wider where repeated quick-suite runs on a 2-core machine spread
# wider: a p99.9 of a few hundred samples is nearly their maximum, and batch waits and the wait
# share follow every hiccup of the machine (run-to-run spread measured there: samples/s and
# busy % 3 %, p50 latency 12 %, p99 25 %, p99.9 over 50 %). Training results (loss, mIoU) are
# deterministic from the seed on one machine; they move only when the code does.
DEFAULT_TOLERANCE_PCT: dict[str, float] = {
    "samples_per_s": 10.0,
    "busy_pct": 5.0,
    "gpu_util_pct": 5.0,
    "data_wait_pct": 20.0,
    "fetch_latency_p50_ms": 10.0,
    "fetch_latency_p90_ms": 15.0,
    "fetch_latency_p99_ms": 25.0,
    "fetch_latency_p99.9_ms": 50.0,
    "batch_wait_p50_ms": 25.0,
    "batch_wait_p99_ms": 50.0,
    "loss_first": 10.0,
    "loss_last": 10.0,
    "miou": 5.0,
}
FALLBACK_TOLERANCE_PCT = 10.0

# Absolute floors, by unit: a change smaller than this (in the metric's own unit) is never large,
# whatever its relative size. A loop that waits 0.8 % of the time and then 1.5 % has nearly
# doubled its wait, but lost less than a point of busy time; a fetch that takes 1.2 ms instead of
# 1.0 ms is inside the scheduling jitter of a busy worker. Without a floor, metrics that sit near
# zero would fail builds on noise.
MIN_CHANGE_BY_UNIT: dict[str, float] = {"%": 1.0, "ms": 0.25}


# --- one metric -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The verdict on one metric, with everything needed to explain it.

    ``baseline`` and ``current`` are the medians of each side's values (the value itself for a
    single run); ``change_pct`` is the change of the median in per cent of the baseline's
    magnitude (None when the baseline is 0 and the value changed); ``reason`` says in words why
    the verdict is what it is."""

    outcome: Outcome
    baseline: float | None
    current: float | None
    change_pct: float | None
    tolerance_pct: float
    min_change: float
    p_value: float | None
    method: str
    n_baseline: int
    n_current: int
    reason: str


def finite_values(values: Sequence[float | None]) -> list[float]:
    """The measured values: None (not measured), NaN and infinities are left out, never zero."""
    kept: list[float] = []
    for value in values:
        if value is None:
            continue
        number = float(value)
        if math.isfinite(number):
            kept.append(number)
    return kept


def relative_change_pct(baseline: float, current: float) -> float | None:
    """(current - baseline) / |baseline| in per cent: the sign says which way the value moved,
    whatever the baseline's sign. None when the baseline is 0 and the value moved (undefined)."""
    if baseline == 0:
        return 0.0 if current == 0 else None
    return (current - baseline) / abs(baseline) * 100.0


@dataclass(frozen=True)
class _Judging:
    """What every verdict on one metric carries besides its outcome: the tolerance and floor it
    was judged by and how many values each side had."""

    tolerance_pct: float
    min_change: float
    n_base: int
    n_cur: int

    def judged(
        self,
        outcome: Outcome,
        reason: str,
        *,
        method: str = METHOD_NONE,
        p_value: float | None = None,
        centre: tuple[float | None, float | None, float | None] = (None, None, None),
    ) -> Verdict:
        b, c, pct = centre
        return Verdict(
            outcome,
            b,
            c,
            pct,
            self.tolerance_pct,
            self.min_change,
            p_value,
            method,
            self.n_base,
            self.n_cur,
            reason,
        )


def verdict(
    baseline_values: Sequence[float | None],
    current_values: Sequence[float | None],
    direction: str,
    tolerance_pct: float,
    alpha: float = DEFAULT_ALPHA,
    *,
    min_change: float = 0.0,
) -> Verdict:
    """Judge one metric from its per-repeat values on each side.

    ``direction`` is "higher" or "lower" (which way is better) or "context" (never judged).
    A change counts as large when it is beyond ``tolerance_pct`` of the baseline's magnitude and
    beyond ``min_change`` in the metric's unit; from a baseline of exactly 0, any change beyond
    ``min_change`` counts as large (a relative change from 0 is undefined, so it is reported as
    None). A large change then needs a two-sided Mann-Whitney p <= ``alpha`` when both sides have
    two or more values; with one value on either side the tolerance alone decides."""
    _check_arguments(direction, alpha, tolerance_pct, min_change)
    base, cur = finite_values(baseline_values), finite_values(current_values)
    judging = _Judging(tolerance_pct, min_change, len(base), len(cur))
    if not base or not cur:
        sides = [name for name, found in (("baseline", base), ("current", cur)) if not found]
        return judging.judged(
            "missing",
            f"not measured in {' and '.join(sides)}",
            centre=(_median(base), _median(cur), None),
        )
    b, c = float(np.median(base)), float(np.median(cur))
    centre = (b, c, relative_change_pct(b, c))
    testable = len(base) >= 2 and len(cur) >= 2
    p_value = mann_whitney_u(base, cur).p_value if testable else None
    if direction == "context":
        return judging.judged(
            "context", "context metric: reported, not judged", p_value=p_value, centre=centre
        )
    small = _small_change(c - b, centre[2], tolerance_pct, min_change)
    if small is not None:
        return judging.judged("ok", small, method=_method(testable), p_value=p_value, centre=centre)
    return _large_change(judging, direction, centre, p_value, alpha)


def _check_arguments(direction: str, alpha: float, tolerance_pct: float, min_change: float) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    if tolerance_pct < 0 or min_change < 0:
        raise ValueError("tolerance_pct and min_change must be >= 0")


def _small_change(
    change: float, change_pct: float | None, tolerance_pct: float, min_change: float
) -> str | None:
    """Why a change is too small to judge (within the floor or the tolerance); None when it is
    large."""
    if abs(change) <= min_change:
        if change == 0:
            return "no change"
        return f"change of {abs(change):.3g} is within the floor of {min_change:g}"
    if change_pct is not None and abs(change_pct) <= tolerance_pct:
        return f"within the tolerance of {tolerance_pct:g} %"
    return None


def _large_change(
    judging: _Judging,
    direction: str,
    centre: tuple[float, float, float | None],
    p_value: float | None,
    alpha: float,
) -> Verdict:
    """A change beyond the floor and the tolerance: regressed or improved when significant (or
    single runs), inconclusive when it is not or cannot be."""
    b, c, change_pct = centre
    n_base, n_cur, tolerance_pct = judging.n_base, judging.n_cur, judging.tolerance_pct
    worse = c < b if direction == "higher" else c > b
    moved: Outcome = "regressed" if worse else "improved"
    size = "from a baseline of 0" if change_pct is None else f"{change_pct:+.1f} %"
    if p_value is None:  # a single run on a side: nothing to test
        runs = "single runs" if n_base == 1 and n_cur == 1 else f"{n_base} vs {n_cur} runs"
        return judging.judged(
            moved,
            f"{size}, beyond the tolerance of {tolerance_pct:g} % ({runs}: the tolerance alone "
            "decides)",
            method=METHOD_TOLERANCE,
            centre=centre,
        )
    floor = smallest_p_value(n_base, n_cur)
    if floor > alpha:
        reason = (
            f"{size}, beyond the tolerance, but {n_base} vs {n_cur} runs can never be significant "
            f"at alpha {alpha:g} (the smallest possible p is {floor:.3g}): run at least "
            f"{repeats_needed(alpha)} repeats on each side"
        )
        return judging.judged(
            "inconclusive", reason, method=METHOD_TEST, p_value=p_value, centre=centre
        )
    if p_value > alpha:
        reason = (
            f"{size}, beyond the tolerance, but not significant (p = {p_value:.3g} > {alpha:g})"
        )
        return judging.judged(
            "inconclusive", reason, method=METHOD_TEST, p_value=p_value, centre=centre
        )
    return judging.judged(
        moved,
        f"{size}, beyond the tolerance of {tolerance_pct:g} % and significant "
        f"(p = {p_value:.3g} <= {alpha:g})",
        method=METHOD_TEST,
        p_value=p_value,
        centre=centre,
    )


def _method(testable: bool) -> str:
    return METHOD_TEST if testable else METHOD_TOLERANCE


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


# --- tolerances -----------------------------------------------------------------------------------


def base_name(metric: str) -> str:
    """``gpu_util_pct[0]`` -> ``gpu_util_pct``: indexed metrics share their base's tolerance."""
    return metric.split("[", 1)[0]


@dataclass(frozen=True)
class Tolerance:
    pct: float
    source: str  # "command line", "scenario" or "default"


def tolerance_for(
    metric: str,
    scenario: Mapping[str, float] | None = None,
    command_line: Mapping[str, float] | None = None,
) -> Tolerance:
    """The tolerance of ``metric``: the command line's, else the scenario's
    (``thresholds.tolerance_pct``), else the default; in each, the exact name first, then the
    base name of an indexed metric."""
    for source, table in (
        ("command line", command_line or {}),
        ("scenario", scenario or {}),
        ("default", DEFAULT_TOLERANCE_PCT),
    ):
        for key in (metric, base_name(metric)):
            if key in table:
                return Tolerance(float(table[key]), source)
    return Tolerance(FALLBACK_TOLERANCE_PCT, "default")


def min_change_for(unit: str) -> float:
    return MIN_CHANGE_BY_UNIT.get(unit, 0.0)


# --- many metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one side: its unit, which way is better, and one value per run (None where
    a run did not measure it)."""

    unit: str
    direction: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    unit: str
    direction: str
    tolerance_source: str
    verdict: Verdict
    baseline_values: tuple[float | None, ...]
    current_values: tuple[float | None, ...]


def compare_metrics(
    baseline: Mapping[str, MetricSeries],
    current: Mapping[str, MetricSeries],
    *,
    scenario_tolerances: Mapping[str, float] | None = None,
    command_line_tolerances: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> list[MetricComparison]:
    """A verdict for every metric of either side, in the baseline's order, then the current's
    new ones. A metric on one side only is ``missing`` (named, never zero); one whose unit or
    direction differs between the sides is ``inconclusive`` (the numbers do not measure the
    same thing)."""
    names = list(baseline) + [name for name in current if name not in baseline]
    compared: list[MetricComparison] = []
    for name in names:
        base, cur = baseline.get(name), current.get(name)
        either = cur or base
        assert either is not None
        tolerance = tolerance_for(name, scenario_tolerances, command_line_tolerances)
        unit, direction = either.unit, either.direction
        base_values = base.values if base else ()
        cur_values = cur.values if cur else ()
        if (
            base is not None
            and cur is not None
            and (base.unit, base.direction)
            != (
                cur.unit,
                cur.direction,
            )
        ):
            what = "unit" if base.unit != cur.unit else "direction"
            old, new = (base.unit, cur.unit) if what == "unit" else (base.direction, direction)
            found = verdict(base_values, cur_values, "context", tolerance.pct, alpha)
            judged = Verdict(
                "inconclusive",
                found.baseline,
                found.current,
                None,
                tolerance.pct,
                0.0,
                None,
                METHOD_NONE,
                found.n_baseline,
                found.n_current,
                f"not comparable: {what} {old!r} in the baseline, {new!r} now",
            )
        else:
            judged = verdict(
                base_values,
                cur_values,
                direction,
                tolerance.pct,
                alpha,
                min_change=min_change_for(unit),
            )
            if base is None or cur is None:
                side = "baseline" if base is None else "current"
                judged = _replace_reason(judged, f"not in the {side} runs")
        compared.append(
            MetricComparison(
                name,
                unit,
                direction,
                tolerance.source,
                judged,
                tuple(base_values),
                tuple(cur_values),
            )
        )
    return compared


def _replace_reason(found: Verdict, reason: str) -> Verdict:
    return replace(found, reason=reason)


def count_outcomes(comparisons: Sequence[MetricComparison]) -> dict[str, int]:
    """How many metrics got each verdict (every outcome present, zero where none)."""
    counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    for item in comparisons:
        counts[item.verdict.outcome] += 1
    return counts
