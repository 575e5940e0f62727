"""A comparison for people, for programs and for CI systems: the text table, the JSON comparison
document, JUnit XML (``--junit``) and a Markdown table for a CI job summary.

All say the same: per scenario, one row per metric with both sides' medians, the change, the
tolerance, the p value and the verdict, then what the reader must know (notes, reasons). The JSON
document carries a format and a format version, like every file the harness writes. In JUnit XML
a scenario is a test suite and a metric a test case: ``regressed`` fails with the numbers in its
message, ``inconclusive`` and ``missing`` are skipped with their reason, and the others pass
(``context`` metrics are shown, never judged, so they cannot fail).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from harness.compare import stats
from harness.compare.hardware import describe_hardware, hardware_key
from harness.compare.judge import ScenarioComparison, totals
from harness.compare.mannwhitney import EXACT_MAX_N
from harness.compare.sides import Side
from harness.text import visible, xml_text

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
    return "\n".join(visible(line) for line in lines)  # names are the user's text


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
    return {
        "format": COMPARISON_FORMAT,
        "format_version": COMPARISON_FORMAT_VERSION,
        "baseline": _side_document(baseline),
        "current": _side_document(current),
        "alpha": alpha,
        "test": "two-sided Mann-Whitney U on per-run values (exact up to "
        f"{EXACT_MAX_N} values); single runs: tolerance only",
        "hardware_match": hardware_match,
        "hardware_differences": hardware_notes,
        "scenarios": [_scenario_document(item) for item in compared],
        "scenarios_only_in": only,
        "counts": totals(compared),
        "warnings": warnings,
        "exit_code": exit_code,
    }


def _side_document(side: Side) -> dict[str, Any]:
    return {
        "source": side.source,
        "kind": side.kind,
        "file": None if side.path is None else str(side.path),
        "hardware": side.hardware,
        "hardware_key": None if side.hardware is None else hardware_key(side.hardware),
    }


def _scenario_document(item: ScenarioComparison) -> dict[str, Any]:
    missing = [m for m in item.metrics if m.verdict.outcome == "missing"]
    return {
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
            "in_baseline": [m.metric for m in missing if m.verdict.n_baseline == 0],
            "in_current": [m.metric for m in missing if m.verdict.n_current == 0],
        },
        "metrics": [_metric_document(m) for m in item.metrics],
    }


def _metric_document(m: stats.MetricComparison) -> dict[str, Any]:
    return {
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
    return visible(f"result: {verdict} ({counted}; {len(compared)} scenario(s)); exit {code}")


# --- CI systems -----------------------------------------------------------------------------------


def _numbers(row: stats.MetricComparison) -> str:
    """The verdict's numbers in one line, for a JUnit message and the Markdown table."""
    judged = row.verdict
    unit = f" {row.unit}" if row.unit else ""
    change = _fmt_pct(judged.change_pct, judged)
    p = "" if judged.p_value is None else f", p {judged.p_value:.3g}"
    tolerance = "" if row.direction == "context" else f", tolerance {judged.tolerance_pct:g} %"
    return (
        f"baseline {_fmt(judged.baseline)}{unit} -> current {_fmt(judged.current)}{unit} "
        f"({change} %{tolerance}{p}; {judged.n_baseline} vs {judged.n_current} runs)"
    )


def render_junit(compared: list[ScenarioComparison], baseline: Side, current: Side) -> str:
    """JUnit XML of the comparison: a test suite per scenario, a test case per metric. Valid
    against the JUnit schema of Jenkins' xUnit plugin (tests/data/junit/junit-10.xsd), which
    Jenkins, GitLab and GitHub test reporters read."""
    root = ET.Element("testsuites", name="harness compare")
    totals = {"tests": 0, "failures": 0}
    for item in compared:
        outcomes = [m.verdict.outcome for m in item.metrics]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=item.scenario,
            tests=str(len(outcomes)),
            failures=str(outcomes.count("regressed")),
            errors="0",
            skipped=str(sum(o in ("inconclusive", "missing") for o in outcomes)),
            time="0",
        )
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("baseline", baseline.source),
            ("current", current.source),
            ("baseline_runs", " ".join(item.baseline.run_ids)),
            ("current_runs", " ".join(item.current.run_ids)),
        ):
            ET.SubElement(properties, "property", name=name, value=value)
        for row in item.metrics:
            case = ET.SubElement(
                suite, "testcase", name=row.metric, classname=item.scenario, time="0"
            )
            outcome, reason = row.verdict.outcome, row.verdict.reason
            if outcome == "regressed":
                failure = ET.SubElement(
                    case, "failure", type="regressed", message=f"regressed: {_numbers(row)}"
                )
                failure.text = reason
            elif outcome in ("inconclusive", "missing"):
                ET.SubElement(case, "skipped", type=outcome, message=f"{outcome}: {reason}")
            ET.SubElement(case, "system-out").text = f"{outcome}: {_numbers(row)}"
        if item.notes:
            ET.SubElement(suite, "system-out").text = "\n".join(item.notes)
        totals["tests"] += len(outcomes)
        totals["failures"] += outcomes.count("regressed")
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("time", "0")
    for element in root.iter():  # no character XML 1.0 forbids; names and messages one line
        element.text = None if element.text is None else xml_text(element.text)
        for key, value in element.attrib.items():
            element.set(key, visible(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


_MARK = {"regressed": "❌ regressed", "improved": "✅ improved", "ok": "ok"}


def _cell(text: str) -> str:
    """Text for one cell of a Markdown table: its controls (a line break, ESC) escaped."""
    return visible(text).replace("|", "\\|")


def render_markdown(
    compared: list[ScenarioComparison], counts: dict[str, int], exit_code: int
) -> str:
    """The verdicts as Markdown tables (for ``$GITHUB_STEP_SUMMARY``): a result line, then per
    scenario one row per metric and the reasons behind every verdict that is not plain."""
    lines = ["## harness compare", "", f"**{_cell(result_line(compared, counts, exit_code))}**"]
    for item in compared:
        marker = " [INCOMPLETE]" if item.baseline.incomplete or item.current.incomplete else ""
        lines += [
            "",
            f"### {_cell(item.scenario)}{marker}",
            "",
            "| metric | unit | baseline | current | change % | tol % | p | verdict |",
            "|---|---|--:|--:|--:|--:|--:|---|",
        ]
        for row in item.metrics:
            judged = row.verdict
            p = "-" if judged.p_value is None else f"{judged.p_value:.3f}"
            tolerance = "-" if row.direction == "context" else f"{judged.tolerance_pct:g}"
            lines.append(
                f"| {_cell(row.metric)} | {_cell(row.unit)} | {_fmt(judged.baseline)} | "
                f"{_fmt(judged.current)} | {_fmt_pct(judged.change_pct, judged)} | {tolerance} | "
                f"{p} | {_MARK.get(judged.outcome, judged.outcome)} |"
            )
        reasons = [
            f"- {row.verdict.outcome}: `{_cell(row.metric)}`: {_cell(row.verdict.reason)}"
            for row in item.metrics
            if row.verdict.outcome in ("regressed", "improved", "inconclusive", "missing")
        ]
        notes = [f"- note: {_cell(note)}" for note in item.notes]
        if reasons or notes:
            lines += ["", *notes, *reasons]
    return "\n".join(lines) + "\n"
