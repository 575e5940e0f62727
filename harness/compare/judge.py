"""Two sides judged scenario by scenario: the shared scenarios paired, each metric given a verdict
by ``harness.compare.stats``, and the notes a reader needs to trust those verdicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.compare import stats
from harness.compare.mannwhitney import repeats_needed, smallest_p_value
from harness.compare.sides import ScenarioRuns, Side


@dataclass
class ScenarioComparison:
    scenario: str
    baseline: ScenarioRuns
    current: ScenarioRuns
    metrics: list[stats.MetricComparison]
    notes: list[str]


def compare_sides(
    baseline: Side, current: Side, *, tolerances: Mapping[str, float], alpha: float
) -> tuple[list[ScenarioComparison], dict[str, list[str]]]:
    """Every scenario the two sides share, compared metric by metric; and the scenarios found
    on one side only."""
    compared: list[ScenarioComparison] = []
    for scenario, base in baseline.scenarios.items():
        cur = current.scenarios.get(scenario)
        if cur is None:
            continue
        scenario_tolerances = {**base.tolerance_pct, **cur.tolerance_pct}
        metrics = stats.compare_metrics(
            base.series,
            cur.series,
            scenario_tolerances=scenario_tolerances,
            command_line_tolerances=tolerances,
            alpha=alpha,
        )
        notes = _scenario_notes(base, cur, alpha)
        known = set(base.series) | set(cur.series)
        known |= {stats.base_name(n) for n in known}
        unknown = sorted(set(scenario_tolerances) - known)
        if unknown:
            notes.append(f"thresholds.tolerance_pct names no metric of these runs: {unknown}")
        compared.append(ScenarioComparison(scenario, base, cur, metrics, notes))
    only = {
        "baseline": [s for s in baseline.scenarios if s not in current.scenarios],
        "current": [s for s in current.scenarios if s not in baseline.scenarios],
    }
    return compared, only


def _scenario_notes(baseline: ScenarioRuns, current: ScenarioRuns, alpha: float) -> list[str]:
    """How the verdicts of a scenario were reached, said once rather than on every row."""
    n_base, n_cur = len(baseline.run_ids), len(current.run_ids)
    notes: list[str] = []
    if n_base == 1 or n_cur == 1:
        runs = "single runs" if n_base == n_cur == 1 else f"{n_base} vs {n_cur} runs"
        notes.append(
            f"{runs}: the tolerance alone decides, no significance test is possible "
            "(run `harness run --repeat 5` on both sides for one)"
        )
    else:
        floor = smallest_p_value(n_base, n_cur)
        if floor > alpha:
            notes.append(
                f"{n_base} vs {n_cur} runs can never be significant at alpha {alpha:g} (the "
                f"smallest possible p is {floor:.3g}): changes beyond the tolerance are "
                f"inconclusive; run at least {repeats_needed(alpha)} repeats on each side"
            )
    for role, group in (("baseline", baseline), ("current", current)):
        for run in group.incomplete:
            notes.append(f"INCOMPLETE {role} run {run}: its values are compared but may be biased")
    return notes


def totals(compared: list[ScenarioComparison]) -> dict[str, int]:
    """How many metrics got each verdict, over all scenarios (every outcome, zero where none)."""
    counts: dict[str, int] = dict.fromkeys(stats.OUTCOMES, 0)
    for item in compared:
        for outcome, count in stats.count_outcomes(item.metrics).items():
            counts[outcome] += count
    return counts
