"""A comparison for people and for programs: the text table and the JSON comparison document.

Both say the same: per scenario, one row per metric with both sides' medians, the change, the
tolerance, the p value and the verdict, then what the reader must know (notes, reasons). The JSON
document carries a format and a format version, like every file the harness writes.
"""

from __future__ import annotations

from typing import Any

from harness.compare import stats
from harness.compare.hardware import describe_hardware, hardware_key
from harness.compare.judge import ScenarioComparison, totals
from harness.compare.mannwhitney import EXACT_MAX_N
from harness.compare.sides import Side

COMPARISON_FORMAT = "harness-comparison"
COMPARISON_FORMAT_VERSION = 1


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100_000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4g}"


def _fmt_pct(value: float | None, judged: stats.Verdict) -> str:
    if value is None:
        return "n/a" if judged.baseline == 0 and judged.current not in (None, 0) else "-"
    return f"{value:+.1f}"


def render_table(
    compared: list[ScenarioComparison], baseline: Side, current: Side, alpha: float
) -> str:
    """The comparison as text: per scenario, one row per metric, then what the reader must know."""
    lines: list[str] = [
        f"baseline: {baseline.source} ({_side_kind(baseline)})",
        f"current:  {current.source} ({_side_kind(current)})",
        f"hardware: {describe_hardware(current.hardware or baseline.hardware)}",
    ]
    header = (
        f"  {'metric':26} {'unit':12} {'baseline':>11} {'current':>11} {'change %':>9} "
        f"{'tol %':>6} {'p':>7}  verdict"
    )
    for item in compared:
        n_base, n_cur = len(item.baseline.run_ids), len(item.current.run_ids)
        marker = " [INCOMPLETE]" if item.baseline.incomplete or item.current.incomplete else ""
        lines += [
            "",
            f"{item.scenario}{marker}: {n_base} baseline run{'s' * (n_base != 1)} vs "
            f"{n_cur} current run{'s' * (n_cur != 1)}; two-sided Mann-Whitney U, alpha {alpha:g}",
            header,
        ]
        for row in item.metrics:
            judged = row.verdict
            p = "-" if judged.p_value is None else f"{judged.p_value:.3f}"
            tolerance = "-" if row.direction == "context" else f"{judged.tolerance_pct:g}"
            outcome = judged.outcome.upper() if judged.outcome == "regressed" else judged.outcome
            lines.append(
                f"  {row.metric:26} {row.unit:12} {_fmt(judged.baseline):>11} "
                f"{_fmt(judged.current):>11} {_fmt_pct(judged.change_pct, judged):>9} "
                f"{tolerance:>6} {p:>7}  {outcome}"
            )
        for note in item.notes:
            lines.append(f"  note: {note}")
        for row in item.metrics:
            if row.verdict.outcome in ("regressed", "improved", "inconclusive", "missing"):
                lines.append(f"  {row.verdict.outcome}: {row.metric}: {row.verdict.reason}")
    return "\n".join(lines)


def _side_kind(side: Side) -> str:
    if side.kind == "baseline":
        return f"saved baseline, {side.path}"
    total = sum(len(g.run_ids) for g in side.scenarios.values())
    return f"{total} run{'s' * (total != 1)}, {len(side.scenarios)} scenario(s)"


def comparison_document(
    compared: list[ScenarioComparison],
    only: dict[str, list[str]],
    baseline: Side,
    current: Side,
    *,
    alpha: float,
    hardware_match: bool | None,
    hardware_notes: list[str],
    warnings: list[str],
    exit_code: int,
) -> dict[str, Any]:
    """The comparison as one JSON document (``--json``), with a format version like every file."""

    def side(s: Side) -> dict[str, Any]:
        return {
            "source": s.source,
            "kind": s.kind,
            "file": None if s.path is None else str(s.path),
            "hardware": s.hardware,
            "hardware_key": None if s.hardware is None else hardware_key(s.hardware),
        }

    return {
        "format": COMPARISON_FORMAT,
        "format_version": COMPARISON_FORMAT_VERSION,
        "baseline": side(baseline),
        "current": side(current),
        "alpha": alpha,
        "test": "two-sided Mann-Whitney U on per-run values (exact up to "
        f"{EXACT_MAX_N} values); single runs: tolerance only",
        "hardware_match": hardware_match,
        "hardware_differences": hardware_notes,
        "scenarios": [
            {
                "scenario": item.scenario,
                "baseline_runs": item.baseline.run_ids,
                "current_runs": item.current.run_ids,
                "incomplete": {
                    "baseline": item.baseline.incomplete,
                    "current": item.current.incomplete,
                },
                "notes": item.notes,
                "counts": stats.count_outcomes(item.metrics),
                "missing": {
                    "in_baseline": [
                        m.metric
                        for m in item.metrics
                        if m.verdict.outcome == "missing" and m.verdict.n_baseline == 0
                    ],
                    "in_current": [
                        m.metric
                        for m in item.metrics
                        if m.verdict.outcome == "missing" and m.verdict.n_current == 0
                    ],
                },
                "metrics": [
                    {
                        "metric": m.metric,
                        "unit": m.unit,
                        "direction": m.direction,
                        "baseline": m.verdict.baseline,
                        "current": m.verdict.current,
                        "change_pct": m.verdict.change_pct,
                        "tolerance_pct": m.verdict.tolerance_pct,
                        "tolerance_source": m.tolerance_source,
                        "min_change": m.verdict.min_change,
                        "p_value": m.verdict.p_value,
                        "method": m.verdict.method,
                        "n_baseline": m.verdict.n_baseline,
                        "n_current": m.verdict.n_current,
                        "verdict": m.verdict.outcome,
                        "reason": m.verdict.reason,
                        "baseline_values": list(m.baseline_values),
                        "current_values": list(m.current_values),
                    }
                    for m in item.metrics
                ],
            }
            for item in compared
        ],
        "scenarios_only_in": only,
        "counts": totals(compared),
        "warnings": warnings,
        "exit_code": exit_code,
    }


def result_line(compared: list[ScenarioComparison], counts: dict[str, int], code: int) -> str:
    """The table's last line: the regressions by name (or none), the counts, the exit code."""
    counted = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    regressions = [
        f"{item.scenario} {m.metric}"
        for item in compared
        for m in item.metrics
        if m.verdict.outcome == "regressed"
    ]
    verdict = f"REGRESSED: {', '.join(regressions)}" if regressions else "no regression"
    return f"result: {verdict} ({counted}; {len(compared)} scenario(s)); exit {code}"
