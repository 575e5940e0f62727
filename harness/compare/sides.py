"""The sides of a comparison: runs, summary files and baseline files, read and grouped by scenario.

A side is what the user names as the baseline or as the current state: a run folder, a run's
``summary.json``, a folder of runs (the repeats of ``harness run --repeat N``, or a whole suite's
results: runs are grouped by scenario name and each group's per-repeat values are compared), or
a saved baseline's file. Runs are read with ``harness.results.RunFolder``, like every reader of
run folders. A saved baseline keeps what a comparison needs of a side (per scenario: run ids,
settings, tolerances and per-run metric values) in one JSON file with its own format and format
version; this module writes and reads that format, ``harness.compare.store`` decides where the
files live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import recovery, results
from harness.compare.hardware import (
    MISMATCH_FLAG,
    hardware_differences,
    hardware_key,
    runs_hardware,
)
from harness.compare.stats import MetricSeries
from harness.errors import HarnessError
from harness.files import check_format, read_json

BASELINE_FORMAT = "harness-baseline"
BASELINE_FORMAT_VERSION = 1
MAX_SETTING_DIFFERENCES = 6  # setting differences named in one warning


@dataclass
class ScenarioRuns:
    """The runs of one scenario on one side: their ids and per-repeat metric values."""

    scenario: str
    run_ids: list[str]
    incomplete: list[str]  # "<run-id> (<reason>)" of runs that did not finish
    series: dict[str, MetricSeries]
    tolerance_pct: dict[str, float]
    settings: dict[str, Any] | None  # the resolved scenario, when a manifest recorded it


@dataclass
class Side:
    """What the user named as a baseline or as the current state, read and grouped."""

    source: str  # as the user wrote it
    kind: str  # "runs" or "baseline"
    hardware: dict[str, object] | None  # None: not recorded (a summary without its manifest)
    scenarios: dict[str, ScenarioRuns]
    path: Path | None = None  # the baseline file, for a saved baseline
    warnings: list[str] = field(default_factory=list)


# --- runs -----------------------------------------------------------------------------------------


def side_from_path(
    path: Path, label: str | None = None, *, allow_mixed_hardware: bool = False
) -> Side:
    """A side from a run folder, a folder of runs, a ``summary.json`` or a baseline file.
    Runs of one side must come from one machine, unless ``allow_mixed_hardware``."""
    label = label or str(path)
    if path.is_file():
        document = read_json(path)
        assert document is not None  # the file exists
        if document.get("format") == BASELINE_FORMAT:
            return side_from_baseline_file(path, label)
        if document.get("format") != results.SUMMARY.format:
            raise HarnessError(
                f"{path}: not a run summary ({results.SUMMARY.file}) or a saved baseline "
                f"(format {document.get('format')!r})"
            )
        runs, warnings = [results.RunFolder.from_summary_file(path)], list[str]()
    elif path.is_dir():
        runs, warnings = _read_runs(path, label)
    else:
        raise HarnessError(f"{path}: no such run folder, summary file or baseline file")
    hardware, hardware_warnings = runs_hardware(runs, label, allow_mixed_hardware)
    side = Side(label, "runs", hardware, _group(runs, label, warnings), warnings=warnings)
    side.warnings.extend(hardware_warnings)
    return side


def _read_runs(path: Path, label: str) -> tuple[list[results.RunFolder], list[str]]:
    """The finished runs under ``path`` (a run folder or a folder of them). A run killed before
    it wrote its summary is left out with a warning when others remain; alone, it is an error."""
    folders = results.find_runs([path])
    runs: list[results.RunFolder] = []
    warnings: list[str] = []
    summary = results.SUMMARY.file
    for folder in folders:
        if recovery.recoverable(folder):  # killed before its summary: incomplete, from segments
            runs.append(recovery.read_run(folder))
            continue
        if not (folder / summary).exists():
            if len(folders) == 1:
                raise HarnessError(f"{folder}: holds no run ({summary} is missing)")
            warnings.append(
                f"{label}: {folder.name} has no {summary} (the run was killed before it "
                "finished): left out"
            )
            continue
        runs.append(results.RunFolder.read(folder))
    if not runs:
        raise HarnessError(f"{path}: holds no finished run (no {summary})")
    return runs, warnings


def _group(
    runs: list[results.RunFolder], label: str, warnings: list[str]
) -> dict[str, ScenarioRuns]:
    """Runs grouped by scenario name, each group in repeat order, as per-repeat series."""
    groups: dict[str, list[results.RunFolder]] = {}
    for run in runs:
        groups.setdefault(run.scenario_name, []).append(run)
    grouped: dict[str, ScenarioRuns] = {}
    for scenario, members in groups.items():
        members.sort(key=lambda r: (r.repeat_index, r.run_id))
        settings = [r.settings for r in members if r.manifest]
        first_settings = settings[0] if settings else None
        for other in settings[1:]:
            differences = setting_differences(first_settings, other)
            if differences:
                warnings.append(
                    f"{label}: the runs of {scenario} do not share their settings "
                    f"({'; '.join(differences)}): they are pooled as repeats anyway"
                )
                break
        grouped[scenario] = ScenarioRuns(
            scenario,
            [r.run_id for r in members],
            [f"{r.run_id} ({r.reason or 'no reason recorded'})" for r in members if not r.complete],
            _series([r.metrics for r in members]),
            _tolerances(first_settings),
            first_settings,
        )
    return grouped


def _series(metric_tables: list[dict[str, Any]]) -> dict[str, MetricSeries]:
    """One series per metric, one value per run: None where a run did not record it."""
    names: list[str] = []
    for table in metric_tables:
        names.extend(name for name in table if name not in names)
    series: dict[str, MetricSeries] = {}
    for name in names:
        entries = [t.get(name) for t in metric_tables]
        known = next(e for e in entries if isinstance(e, dict))
        values = tuple(_number(e.get("value")) if isinstance(e, dict) else None for e in entries)
        series[name] = MetricSeries(
            str(known.get("unit", "")), str(known.get("direction", "context")), values
        )
    return series


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _tolerances(settings: dict[str, Any] | None) -> dict[str, float]:
    thresholds = (settings or {}).get("thresholds") or {}
    table = thresholds.get("tolerance_pct") or {}
    return {str(k): float(v) for k, v in table.items() if _number(v) is not None}


def setting_differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Resolved scenario fields that differ, ``path old -> new``; the description is left out.
    Empty when either is unknown."""
    if a is None or b is None:
        return []
    left, right = _flatten(a), _flatten(b)
    keys = sorted(k for k in set(left) | set(right) if k != "description")
    found = [
        f"{k} {left.get(k)!r} -> {right.get(k)!r}" for k in keys if left.get(k) != right.get(k)
    ]
    if len(found) > MAX_SETTING_DIFFERENCES:
        rest = len(found) - MAX_SETTING_DIFFERENCES
        found = [*found[:MAX_SETTING_DIFFERENCES], f"{rest} more"]
    return found


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def check_hardware(
    baseline: Side, current: Side, allow_mismatch: bool
) -> tuple[bool | None, list[str]]:
    """(match: True, False, or None when unknown; the differences). Refuses a mismatch, or an
    unknown side, unless allowed."""
    flag = f"pass {MISMATCH_FLAG} to compare anyway"
    unknown = [s.source for s in (baseline, current) if s.hardware is None]
    if unknown:
        if not allow_mismatch:
            raise HarnessError(
                f"cannot tell whether baseline and current ran on the same hardware: "
                f"{' and '.join(unknown)} recorded none (no {results.MANIFEST.file}); {flag}"
            )
        return None, []
    assert baseline.hardware is not None and current.hardware is not None
    differences = hardware_differences(baseline.hardware, current.hardware)
    if differences and not allow_mismatch:
        raise HarnessError(
            f"baseline and current ran on different hardware ({'; '.join(differences)}): their "
            f"numbers are not comparable; {flag}"
        )
    return not differences, differences


# --- baseline files -------------------------------------------------------------------------------


def baseline_document(side: Side, name: str) -> dict[str, Any]:
    """``side`` as a saved baseline ``name``; its hardware must be known."""
    assert side.hardware is not None
    return {
        "format": BASELINE_FORMAT,
        "format_version": BASELINE_FORMAT_VERSION,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": side.source,
        "hardware_key": hardware_key(side.hardware),
        "hardware": side.hardware,
        "scenarios": {
            scenario: {
                "runs": group.run_ids,
                "settings": group.settings,
                "tolerance_pct": group.tolerance_pct,
                "metrics": {
                    metric: {
                        "unit": series.unit,
                        "direction": series.direction,
                        "values": list(series.values),
                    }
                    for metric, series in group.series.items()
                },
            }
            for scenario, group in side.scenarios.items()
        },
    }


def read_baseline(path: Path) -> dict[str, Any]:
    """A baseline file's document; HarnessError when missing or of another format version."""
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{path}: missing")
    check_format(path, document, BASELINE_FORMAT, BASELINE_FORMAT_VERSION)
    return document


def side_from_baseline_file(path: Path, label: str) -> Side:
    document = read_baseline(path)
    try:
        scenarios = {
            scenario: ScenarioRuns(
                scenario,
                list(body["runs"]),
                [],
                {
                    metric: MetricSeries(
                        str(entry["unit"]),
                        str(entry["direction"]),
                        tuple(_number(v) for v in entry["values"]),
                    )
                    for metric, entry in body["metrics"].items()
                },
                {str(k): float(v) for k, v in (body.get("tolerance_pct") or {}).items()},
                body.get("settings"),
            )
            for scenario, body in document["scenarios"].items()
        }
        hardware = dict(document["hardware"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HarnessError(f"{path}: malformed baseline ({type(exc).__name__}: {exc})") from None
    return Side(label, "baseline", hardware, scenarios, path=path)
