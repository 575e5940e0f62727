"""The commands: ``harness compare``, ``harness baseline save`` and ``harness baseline list``.

Each reads what the user named, prints its result (warnings on stderr, so that ``--json``
output stays parseable) and returns the exit code. Bad input raises ``HarnessError`` for the
CLI's one-line message and exit 2.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import results
from harness.compare import judge, output, stats, store
from harness.compare.hardware import describe_hardware, hardware_key
from harness.compare.sides import (
    Side,
    check_hardware,
    setting_differences,
    side_from_baseline_file,
    side_from_path,
)
from harness.errors import ExitCode, HarnessError
from harness.files import STDOUT, atomic_write, write_json_output
from harness.text import visible

# --- harness compare ------------------------------------------------------------------------------


def compare_command(
    baseline: str,
    current: str,
    *,
    json_output: str | None,
    tolerances: dict[str, float],
    allow_hardware_mismatch: bool,
    alpha: float = stats.DEFAULT_ALPHA,
    baselines: Path | None = None,
    junit: Path | None = None,
) -> int:
    """``harness compare BASELINE CURRENT``: print the verdicts as a table, and as JSON to the
    file ``json_output`` (to stdout instead of the table for ``-``); return 1 when any metric
    regressed, else 0. ``junit`` writes them as JUnit XML too, and when
    ``$GITHUB_STEP_SUMMARY`` names a file a Markdown table of them is appended to it. Bad input
    (missing or unreadable runs, other format versions, other hardware, no scenario in common,
    unknown metric names) raises ``HarnessError``."""
    if not (isinstance(alpha, float | int) and 0.0 < alpha < 1.0):
        raise HarnessError(f"--alpha {alpha}: expected a number between 0 and 1, e.g. 0.05")
    for metric, pct in tolerances.items():
        if not (math.isfinite(pct) and pct >= 0):
            raise HarnessError(f"--tolerance {metric}={pct}: expected a percentage >= 0")
    base_side, cur_side = _load_sides(
        baseline, current, store.baselines_dir(baselines), allow_hardware_mismatch
    )
    _check_tolerance_names(tolerances, base_side, cur_side)
    match, hardware_notes = check_hardware(base_side, cur_side, allow_hardware_mismatch)
    warnings = base_side.warnings + cur_side.warnings
    if match is False:
        warnings.append(
            "comparing runs from different hardware (--allow-hardware-mismatch): "
            + "; ".join(hardware_notes)
        )
    elif match is None:
        warnings.append("hardware not recorded on a side: not checked (--allow-hardware-mismatch)")
    compared, only = judge.compare_sides(base_side, cur_side, tolerances=tolerances, alpha=alpha)
    if not compared:
        raise HarnessError(
            f"baseline and current share no scenario: baseline has "
            f"{', '.join(base_side.scenarios) or 'none'}; current has "
            f"{', '.join(cur_side.scenarios) or 'none'}"
        )
    warnings += _comparison_warnings(compared, only)
    totals = judge.totals(compared)
    exit_code = ExitCode.FAILED if totals["regressed"] else ExitCode.OK
    for warning in warnings:
        print(visible(f"warning: {warning}"), file=sys.stderr)
    if junit is not None:
        with atomic_write(junit) as stream:
            stream.write(output.render_junit(compared, base_side, cur_side).encode())
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        _append_text(
            Path(step_summary),
            output.render_markdown(compared, totals, exit_code),
            "$GITHUB_STEP_SUMMARY",
        )
    if json_output is not None:
        document = output.comparison_document(
            compared,
            only,
            base_side,
            cur_side,
            alpha=alpha,
            hardware_match=match,
            hardware_notes=hardware_notes,
            warnings=warnings,
            exit_code=exit_code,
        )
        write_json_output(json_output, document)
    if json_output != STDOUT:
        print(output.render_table(compared, base_side, cur_side, alpha))
        print()
        print(output.result_line(compared, totals, exit_code))
    return exit_code


def _append_text(path: Path, text: str, what: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise HarnessError(f"{what} {path}: cannot append: {exc.strerror or exc}") from exc


def _load_sides(
    baseline: str, current: str, baselines: Path, allow_mixed_hardware: bool
) -> tuple[Side, Side]:
    """Both sides; paths win over names, and are read first, so that a baseline name can be
    resolved on the other side's hardware."""
    specs = {"baseline": baseline, "current": current}
    sides: dict[str, Side] = {}
    for role, spec in specs.items():
        if Path(spec).exists() or not store.NAME_PATTERN.fullmatch(spec):
            sides[role] = side_from_path(Path(spec), allow_mixed_hardware=allow_mixed_hardware)
    for role, spec in specs.items():
        if role not in sides:
            other = next((s for r, s in sides.items() if r != role), None)
            path = store.find_baseline(spec, baselines, other.hardware if other else None)
            sides[role] = side_from_baseline_file(path, spec)
    return sides["baseline"], sides["current"]


def parse_tolerances(items: Sequence[str]) -> dict[str, float]:
    """``["samples_per_s=5", "fetch_latency_p99_ms=30%"]`` -> ``{name: pct}``; one clear line
    for anything else. A metric's base name (``gpu_util_pct``) covers its indexed variants."""
    tolerances: dict[str, float] = {}
    for item in items:
        metric, sep, text = item.partition("=")
        try:
            pct = float(text.strip().removesuffix("%"))
        except ValueError:
            pct = math.nan
        if not sep or not metric.strip() or not math.isfinite(pct) or pct < 0:
            raise HarnessError(
                f"--tolerance {item!r}: expected METRIC=PCT with PCT >= 0, "
                "e.g. --tolerance samples_per_s=5"
            )
        tolerances[metric.strip()] = pct
    return tolerances


def _check_tolerance_names(tolerances: Mapping[str, float], baseline: Side, current: Side) -> None:
    """A tolerance for a metric that no run has is a typo; refusing it beats ignoring it."""
    known: set[str] = set()
    for side in (baseline, current):
        for group in side.scenarios.values():
            known.update(group.series)
            known.update(stats.base_name(name) for name in group.series)
    for metric in tolerances:
        if metric not in known:
            close = difflib.get_close_matches(metric, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise HarnessError(f"--tolerance {metric}: no such metric in these runs{hint}")


def _comparison_warnings(
    compared: list[judge.ScenarioComparison], only: dict[str, list[str]]
) -> list[str]:
    """What the reader must know before trusting the verdicts: scenarios left out, incomplete
    runs, metrics measured on one side only, settings that differ."""
    warnings: list[str] = []
    for role, names in only.items():
        if names:
            warnings.append(f"only in {role}, not compared: {', '.join(names)}")
    for item in compared:
        for role, group in (("baseline", item.baseline), ("current", item.current)):
            for run in group.incomplete:
                warnings.append(
                    f"{item.scenario}: the {role} run {run} is incomplete: compared, and marked"
                )
        scenario_missing = [m.metric for m in item.metrics if m.verdict.outcome == "missing"]
        if scenario_missing:
            warnings.append(
                f"{item.scenario}: not compared, not measured on a side: "
                + ", ".join(scenario_missing)
            )
        if item.baseline.settings and item.current.settings:
            differences = setting_differences(item.baseline.settings, item.current.settings)
            if differences:
                warnings.append(
                    f"{item.scenario}: settings differ from the baseline's: "
                    + "; ".join(differences)
                )
    return warnings


# --- harness baseline -----------------------------------------------------------------------------


def baseline_save_command(run: Path, name: str, *, baselines: Path | None = None) -> int:
    """``harness baseline save RUN --name NAME``: keep the per-run values of RUN (a run folder, a
    summary, or a folder of runs such as a suite's repeats) under NAME for this hardware. A
    baseline is a reference, so incomplete runs and runs without recorded hardware are refused."""
    store.check_name(name)
    side = side_from_path(Path(run))
    for warning in side.warnings:
        print(visible(f"warning: {warning}"), file=sys.stderr)
    incomplete = [f"{g.scenario}: {r}" for g in side.scenarios.values() for r in g.incomplete]
    if incomplete:
        raise HarnessError(
            f"{run}: a baseline must be made of complete runs; incomplete: {'; '.join(incomplete)}"
        )
    if side.hardware is None:
        raise HarnessError(
            f"{run}: the hardware of its runs is not recorded (no {results.MANIFEST.file}); a "
            "baseline is kept per hardware"
        )
    path, replaced = store.save_baseline(side, name, store.baselines_dir(baselines))
    groups = ", ".join(
        f"{s} ({len(g.run_ids)} run{'s' * (len(g.run_ids) != 1)})"
        for s, g in side.scenarios.items()
    )
    verb = "replaced" if replaced else "saved"
    key = hardware_key(side.hardware)
    print(
        visible(f"{verb} baseline {name} for hardware {key} ({describe_hardware(side.hardware)})")
    )
    print(visible(f"  scenarios: {groups}"))
    print(visible(f"  file: {path}"))
    return ExitCode.OK


def baseline_list_command(*, baselines: Path | None = None) -> int:
    """``harness baseline list``: every saved baseline with its hardware, newest last."""
    folder = store.baselines_dir(baselines)
    rows = store.list_baselines(folder)
    if not rows:
        print(f"no baselines in {folder} (save one with `harness baseline save RUN --name NAME`)")
        return ExitCode.OK
    print(f"baselines in {folder}:")
    headers = ("name", "hardware", "created", "scenarios (runs)", "machine")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  machine")
    for row in rows:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        print(visible(f"  {cells}  {row[-1]}"))
    return ExitCode.OK
