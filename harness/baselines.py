"""Comparison sides and saved baselines: the I/O around the pure verdicts of ``harness.compare``.

A side of a comparison is what the user names: a run folder, a run's ``summary.json``, a folder
of runs (the repeats of ``harness run --repeat N``, or a whole suite's results: runs are grouped
by scenario name and each group's per-repeat values are compared), or the name of a saved
baseline. Paths win over names.

Saved baselines live in a store (``./baselines/``, or ``$HARNESS_BASELINES``), one JSON file per
name and machine::

    baselines/<hardware-key>/<name>.json

``<hardware-key>`` is a short hash of the hardware identity (GPU model and count, driver, CPU
model, storage device, filesystem; see ``harness.env.hardware_identity``). One name (say
``main``) can so be saved by every machine of a CI pool, and a comparison picks the one saved on
the current run's hardware. Numbers from other hardware are not comparable: a comparison across
machines is refused unless the user asks for it (``--allow-hardware-mismatch``).

Every file written here carries a format and a format version; other versions are refused with
a clear message, like run folders are (``harness.results``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import compare, results
from harness.data.files import ensure_writable_dir, read_json, write_json_atomic
from harness.data.manifest import check_format
from harness.env import NOT_AVAILABLE, hardware_identity
from harness.errors import HarnessError

BASELINE_FORMAT = "harness-baseline"
BASELINE_FORMAT_VERSION = 1
COMPARISON_FORMAT = "harness-comparison"
COMPARISON_FORMAT_VERSION = 1
BASELINES_ENV = "HARNESS_BASELINES"
DEFAULT_BASELINES_DIR = Path("baselines")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_SETTING_DIFFERENCES = 6  # setting differences named in one warning


# --- the store ------------------------------------------------------------------------------------


def baselines_dir(explicit: Path | None = None) -> Path:
    """Where baselines are kept: the argument, else ``$HARNESS_BASELINES``, else ./baselines."""
    if explicit is not None:
        return Path(explicit)
    configured = os.environ.get(BASELINES_ENV)
    return Path(configured) if configured else DEFAULT_BASELINES_DIR


def check_name(name: str) -> str:
    """Baseline names become file names: letters, digits, '.', '_' and '-', not starting with
    a dot or a dash."""
    if not NAME_PATTERN.fullmatch(name):
        raise HarnessError(
            f"baseline name {name!r}: use letters, digits, '.', '_' and '-' (up to 100), "
            "starting with a letter or digit"
        )
    return name


def normalised_identity(identity: Mapping[str, object]) -> dict[str, object]:
    """The identity with every "not available: <reason>" reduced to "not available": the reason
    (a missing library, a permission) says nothing about the hardware."""
    return {
        key: NOT_AVAILABLE if isinstance(value, str) and value.startswith(NOT_AVAILABLE) else value
        for key, value in identity.items()
    }


def hardware_key(identity: Mapping[str, object]) -> str:
    """A short stable name for a hardware identity: the folder its baselines are kept in."""
    text = json.dumps(normalised_identity(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def hardware_differences(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    """The identity fields that differ, one phrase each: ``cpu_model 'X' vs 'Y'``."""
    left, right = normalised_identity(a), normalised_identity(b)
    return [
        f"{key} {left.get(key)!r} vs {right.get(key)!r}"
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def describe_hardware(identity: Mapping[str, object] | None) -> str:
    """One line a reader recognises a machine by."""
    if identity is None:
        return "hardware not recorded"
    count = identity.get("gpu_count")
    gpus = f"{count}x {identity.get('gpu_model')}" if isinstance(count, int) and count else "no GPU"
    return (
        f"{gpus}; {identity.get('cpu_model')}; "
        f"{identity.get('storage_device')} ({identity.get('storage_fs_type')})"
    )


# --- one side of a comparison -----------------------------------------------------------------


@dataclass
class ScenarioRuns:
    """The runs of one scenario on one side: their ids and per-repeat metric values."""

    scenario: str
    run_ids: list[str]
    incomplete: list[str]  # "<run-id> (<reason>)" of runs that did not finish
    series: dict[str, compare.MetricSeries]
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


@dataclass
class _Run:
    folder: Path
    summary: dict[str, Any]
    manifest: dict[str, Any] | None

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.folder.name)

    @property
    def scenario(self) -> str:
        return str(self.summary.get("scenario") or self.folder.name)

    @property
    def repeat_index(self) -> int:
        repeat = (self.manifest or {}).get("repeat") or {}
        index = repeat.get("index") if isinstance(repeat, dict) else None
        return index if isinstance(index, int) else 0


def _read_run(folder: Path) -> _Run:
    summary = results.read_document(folder, results.SUMMARY)
    manifest = None
    if (folder / results.MANIFEST[0]).exists():
        manifest = results.read_document(folder, results.MANIFEST)
    return _Run(folder, summary, manifest)


def _read_runs(path: Path, label: str) -> tuple[list[_Run], list[str]]:
    """The runs under ``path`` (a run folder or a folder of them). A run killed before it wrote
    its summary is left out with a warning when others remain; alone, it is an error."""
    folders = results.find_runs([path])
    runs: list[_Run] = []
    warnings: list[str] = []
    for folder in folders:
        if not (folder / results.SUMMARY[0]).exists() and len(folders) > 1:
            warnings.append(
                f"{label}: {folder.name} has no {results.SUMMARY[0]} (the run was killed before "
                "it finished): left out"
            )
            continue
        runs.append(_read_run(folder))
    if not runs:
        raise HarnessError(f"{path}: holds no finished run (no {results.SUMMARY[0]})")
    return runs, warnings


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
            return _side_from_baseline_file(path, label)
        runs, warnings = [_run_from_summary_file(path, document)], []
    elif path.is_dir():
        runs, warnings = _read_runs(path, label)
    else:
        raise HarnessError(f"{path}: no such run folder, summary file or baseline file")
    hardware, hardware_warnings = _runs_hardware(runs, label, allow_mixed_hardware)
    side = Side(label, "runs", hardware, _group(runs, label, warnings), warnings=warnings)
    side.warnings.extend(hardware_warnings)
    return side


def _run_from_summary_file(path: Path, document: dict[str, Any]) -> _Run:
    """A run from its summary file, wherever it was copied; the manifest beside it counts only
    when it belongs to the same run."""
    if document.get("format") != results.SUMMARY[1]:
        raise HarnessError(
            f"{path}: not a run summary ({results.SUMMARY[0]}) or a saved baseline "
            f"(format {document.get('format')!r})"
        )
    check_format(path, document, results.SUMMARY[1], results.FORMAT_VERSION)
    manifest = None
    if (path.parent / results.MANIFEST[0]).exists():
        beside = results.read_document(path.parent, results.MANIFEST)
        if beside.get("run_id") == document.get("run_id"):
            manifest = beside
    return _Run(path.parent, document, manifest)


def _runs_hardware(
    runs: list[_Run], label: str, allow_mixed: bool
) -> tuple[dict[str, object] | None, list[str]]:
    """The hardware all ``runs`` ran on; None when a run did not record it. Runs of one side
    on different machines are not repeats of one measurement: refused unless ``allow_mixed``."""
    identities = [hardware_identity(r.manifest) if r.manifest else None for r in runs]
    if any(identity is None for identity in identities):
        missing = next(r for r, i in zip(runs, identities, strict=True) if i is None)
        return None, [
            f"{label}: {missing.folder.name} has no {results.MANIFEST[0]}: its hardware is unknown"
        ]
    first = identities[0]
    assert first is not None
    for run, identity in zip(runs, identities, strict=True):
        assert identity is not None
        differences = hardware_differences(first, identity)
        if not differences:
            continue
        text = (
            f"{label}: {runs[0].folder.name} and {run.folder.name} ran on different hardware "
            f"({'; '.join(differences)})"
        )
        if not allow_mixed:
            raise HarnessError(
                f"{text}: runs from different machines are not repeats of one measurement; "
                "pass --allow-hardware-mismatch to pool them anyway"
            )
        return first, [f"{text}: pooled anyway (--allow-hardware-mismatch)"]
    return first, []


def _group(runs: list[_Run], label: str, warnings: list[str]) -> dict[str, ScenarioRuns]:
    """Runs grouped by scenario name, each group in repeat order, as per-repeat series."""
    groups: dict[str, list[_Run]] = {}
    for run in runs:
        groups.setdefault(run.scenario, []).append(run)
    grouped: dict[str, ScenarioRuns] = {}
    for scenario, members in groups.items():
        members.sort(key=lambda r: (r.repeat_index, r.run_id))
        series = _series([r.summary.get("metrics") or {} for r in members])
        settings = [r.manifest.get("scenario") for r in members if r.manifest]
        first_settings = settings[0] if settings else None
        for other in settings[1:]:
            differences = setting_differences(first_settings, other)
            if differences:
                warnings.append(
                    f"{label}: the runs of {scenario} do not share their settings "
                    f"({'; '.join(differences)}): they are pooled as repeats anyway"
                )
                break
        incomplete = [
            f"{r.run_id} ({r.summary.get('reason') or 'no reason recorded'})"
            for r in members
            if r.summary.get("complete") is not True
        ]
        grouped[scenario] = ScenarioRuns(
            scenario,
            [r.run_id for r in members],
            incomplete,
            series,
            _tolerances(first_settings),
            first_settings,
        )
    return grouped


def _series(metric_tables: list[dict[str, Any]]) -> dict[str, compare.MetricSeries]:
    """One series per metric, one value per run: None where a run did not record it."""
    names: list[str] = []
    for table in metric_tables:
        names.extend(name for name in table if name not in names)
    series: dict[str, compare.MetricSeries] = {}
    for name in names:
        entries = [t.get(name) for t in metric_tables]
        known = next(e for e in entries if isinstance(e, dict))
        values = tuple(_number(e.get("value")) if isinstance(e, dict) else None for e in entries)
        series[name] = compare.MetricSeries(
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


# --- saved baselines --------------------------------------------------------------------------


def _baseline_document(side: Side, name: str) -> dict[str, Any]:
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


def _read_baseline(path: Path) -> dict[str, Any]:
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{path}: missing")
    check_format(path, document, BASELINE_FORMAT, BASELINE_FORMAT_VERSION)
    return document


def _side_from_baseline_file(path: Path, label: str) -> Side:
    document = _read_baseline(path)
    try:
        scenarios = {
            scenario: ScenarioRuns(
                scenario,
                list(body["runs"]),
                [],
                {
                    metric: compare.MetricSeries(
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


def find_baseline(name: str, store: Path, hardware: Mapping[str, object] | None) -> Path:
    """The file of baseline ``name``: the one saved on ``hardware`` when there is one, else the
    only one of that name (the hardware check then explains the mismatch)."""
    candidates = sorted(store.glob(f"*/{name}.json")) if store.is_dir() else []
    if not candidates:
        raise HarnessError(
            f"{name}: no such run folder, summary file or saved baseline (none named {name!r} "
            f"in {store}; save one with `harness baseline save RUN --name {name}`)"
        )
    if hardware is not None:
        own = store / hardware_key(hardware) / f"{name}.json"
        if own.exists():
            return own
    if len(candidates) == 1:
        return candidates[0]
    listed = ", ".join(str(c) for c in candidates)
    raise HarnessError(
        f"baseline {name!r} is saved for {len(candidates)} other machines, none of them this "
        f"run's: name one by its file ({listed})"
    )


def _load_sides(
    baseline: str, current: str, store: Path, allow_mixed_hardware: bool
) -> tuple[Side, Side]:
    """Both sides; paths are read first, so that a baseline name can be resolved on the other
    side's hardware."""
    specs = {"baseline": baseline, "current": current}
    sides: dict[str, Side] = {}
    for role, spec in specs.items():
        if Path(spec).exists() or not NAME_PATTERN.fullmatch(spec):
            sides[role] = side_from_path(Path(spec), allow_mixed_hardware=allow_mixed_hardware)
    for role, spec in specs.items():
        if role not in sides:
            other = next((s for r, s in sides.items() if r != role), None)
            path = find_baseline(spec, store, other.hardware if other else None)
            sides[role] = _side_from_baseline_file(path, spec)
    return sides["baseline"], sides["current"]


# --- parsing command-line values --------------------------------------------------------------


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
            known.update(compare.base_name(name) for name in group.series)
    for metric in tolerances:
        if metric not in known:
            close = difflib.get_close_matches(metric, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise HarnessError(f"--tolerance {metric}: no such metric in these runs{hint}")


# --- comparing --------------------------------------------------------------------------------


@dataclass
class ScenarioComparison:
    scenario: str
    baseline: ScenarioRuns
    current: ScenarioRuns
    metrics: list[compare.MetricComparison]
    notes: list[str]


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
        floor = compare.smallest_p_value(n_base, n_cur)
        if floor > alpha:
            notes.append(
                f"{n_base} vs {n_cur} runs can never be significant at alpha {alpha:g} (the "
                f"smallest possible p is {floor:.3g}): changes beyond the tolerance are "
                f"inconclusive; run at least {compare.repeats_needed(alpha)} repeats on each side"
            )
    for role, group in (("baseline", baseline), ("current", current)):
        for run in group.incomplete:
            notes.append(f"INCOMPLETE {role} run {run}: its values are compared but may be biased")
    return notes


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
        metrics = compare.compare_metrics(
            base.series,
            cur.series,
            scenario_tolerances=scenario_tolerances,
            command_line_tolerances=tolerances,
            alpha=alpha,
        )
        notes = _scenario_notes(base, cur, alpha)
        known = set(base.series) | set(cur.series)
        known |= {compare.base_name(n) for n in known}
        unknown = sorted(set(scenario_tolerances) - known)
        if unknown:
            notes.append(f"thresholds.tolerance_pct names no metric of these runs: {unknown}")
        compared.append(ScenarioComparison(scenario, base, cur, metrics, notes))
    only = {
        "baseline": [s for s in baseline.scenarios if s not in current.scenarios],
        "current": [s for s in current.scenarios if s not in baseline.scenarios],
    }
    return compared, only


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100_000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.4g}"


def _fmt_pct(value: float | None, judged: compare.Verdict) -> str:
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


def _totals(compared: list[ScenarioComparison]) -> dict[str, int]:
    totals = dict.fromkeys(compare.OUTCOMES, 0)
    for item in compared:
        for outcome, count in compare.count_outcomes(item.metrics).items():
            totals[outcome] += count
    return totals


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
        f"{compare.EXACT_MAX_N} values); single runs: tolerance only",
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
                "counts": compare.count_outcomes(item.metrics),
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
        "counts": _totals(compared),
        "warnings": warnings,
        "exit_code": exit_code,
    }


def _check_hardware(
    baseline: Side, current: Side, allow_mismatch: bool
) -> tuple[bool | None, list[str]]:
    """(match: True, False, or None when unknown; the differences). Refuses a mismatch, or an
    unknown side, unless allowed."""
    flag = "pass --allow-hardware-mismatch to compare anyway"
    unknown = [s.source for s in (baseline, current) if s.hardware is None]
    if unknown:
        if not allow_mismatch:
            raise HarnessError(
                f"cannot tell whether baseline and current ran on the same hardware: "
                f"{' and '.join(unknown)} recorded none (no {results.MANIFEST[0]}); {flag}"
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


def compare_command(
    baseline: str,
    current: str,
    *,
    as_json: bool,
    tolerances: dict[str, float],
    allow_hardware_mismatch: bool,
    alpha: float = compare.DEFAULT_ALPHA,
    baselines: Path | None = None,
) -> int:
    """``harness compare BASELINE CURRENT``: print the verdicts (table, or JSON with
    ``as_json``) and return 1 when any metric regressed, else 0. Bad input (missing or unreadable
    runs, other format versions, other hardware, no scenario in common, unknown metric names)
    raises ``HarnessError`` for the CLI's one-line message and exit 2. Warnings go to stderr, so
    that ``--json`` output stays parseable."""
    if not (isinstance(alpha, float | int) and 0.0 < alpha < 1.0):
        raise HarnessError(f"--alpha {alpha}: expected a number between 0 and 1, e.g. 0.05")
    for metric, pct in tolerances.items():
        if not (math.isfinite(pct) and pct >= 0):
            raise HarnessError(f"--tolerance {metric}={pct}: expected a percentage >= 0")
    store = baselines_dir(baselines)
    base_side, cur_side = _load_sides(baseline, current, store, allow_hardware_mismatch)
    _check_tolerance_names(tolerances, base_side, cur_side)
    match, hardware_notes = _check_hardware(base_side, cur_side, allow_hardware_mismatch)
    warnings = base_side.warnings + cur_side.warnings
    if match is False:
        warnings.append(
            "comparing runs from different hardware (--allow-hardware-mismatch): "
            + "; ".join(hardware_notes)
        )
    elif match is None:
        warnings.append("hardware not recorded on a side: not checked (--allow-hardware-mismatch)")
    compared, only = compare_sides(base_side, cur_side, tolerances=tolerances, alpha=alpha)
    if not compared:
        raise HarnessError(
            f"baseline and current share no scenario: baseline has "
            f"{', '.join(base_side.scenarios) or 'none'}; current has "
            f"{', '.join(cur_side.scenarios) or 'none'}"
        )
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
    totals = _totals(compared)
    exit_code = 1 if totals["regressed"] else 0
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if as_json:
        document = comparison_document(
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
        print(json.dumps(document, indent=1))
    else:
        print(render_table(compared, base_side, cur_side, alpha))
        print()
        print(_result_line(compared, totals, exit_code))
    return exit_code


def _result_line(compared: list[ScenarioComparison], totals: dict[str, int], code: int) -> str:
    counted = ", ".join(f"{count} {outcome}" for outcome, count in totals.items() if count)
    regressions = [
        f"{item.scenario} {m.metric}"
        for item in compared
        for m in item.metrics
        if m.verdict.outcome == "regressed"
    ]
    verdict = f"REGRESSED: {', '.join(regressions)}" if regressions else "no regression"
    return f"result: {verdict} ({counted}; {len(compared)} scenario(s)); exit {code}"


# --- baseline commands ------------------------------------------------------------------------


def baseline_save_command(run: Path, name: str, *, baselines: Path | None = None) -> int:
    """``harness baseline save RUN --name NAME``: keep the per-run values of RUN (a run folder, a
    summary, or a folder of runs such as a suite's repeats) under NAME for this hardware. A
    baseline is a reference, so incomplete runs and runs without recorded hardware are refused."""
    check_name(name)
    side = side_from_path(Path(run))
    for warning in side.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    incomplete = [f"{g.scenario}: {r}" for g in side.scenarios.values() for r in g.incomplete]
    if incomplete:
        raise HarnessError(
            f"{run}: a baseline must be made of complete runs; incomplete: {'; '.join(incomplete)}"
        )
    if side.hardware is None:
        raise HarnessError(
            f"{run}: the hardware of its runs is not recorded (no {results.MANIFEST[0]}); a "
            "baseline is kept per hardware"
        )
    store = baselines_dir(baselines)
    key = hardware_key(side.hardware)
    folder = store / key
    ensure_writable_dir(folder)
    path = folder / f"{name}.json"
    replaced = path.exists()
    if replaced:
        _read_baseline(path)  # never overwrite a file this harness cannot read
    write_json_atomic(path, _baseline_document(side, name))
    groups = ", ".join(
        f"{s} ({len(g.run_ids)} run{'s' * (len(g.run_ids) != 1)})"
        for s, g in side.scenarios.items()
    )
    verb = "replaced" if replaced else "saved"
    print(f"{verb} baseline {name} for hardware {key} ({describe_hardware(side.hardware)})")
    print(f"  scenarios: {groups}")
    print(f"  file: {path}")
    return 0


def baseline_list_command(*, baselines: Path | None = None) -> int:
    """``harness baseline list``: every saved baseline with its hardware, newest last. A file
    that cannot be read is listed with the reason rather than hiding the others."""
    store = baselines_dir(baselines)
    files = sorted(store.glob("*/*.json")) if store.is_dir() else []
    if not files:
        print(f"no baselines in {store} (save one with `harness baseline save RUN --name NAME`)")
        return 0
    rows: list[tuple[str, ...]] = []
    for path in files:
        try:
            document = _read_baseline(path)
        except HarnessError as exc:
            rows.append((path.stem, path.parent.name, "-", "-", f"unreadable: {exc}"))
            continue
        scenarios = document.get("scenarios") or {}
        runs = ", ".join(f"{s} x{len(b.get('runs', []))}" for s, b in scenarios.items())
        rows.append(
            (
                str(document.get("name", path.stem)),
                str(document.get("hardware_key", path.parent.name)),
                str(document.get("created", "-")),
                runs or "-",
                describe_hardware(document.get("hardware")),
            )
        )
    rows.sort(key=lambda row: (row[0], row[2]))
    print(f"baselines in {store}:")
    headers = ("name", "hardware", "created", "scenarios (runs)", "machine")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  machine")
    for row in rows:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        print(f"  {cells}  {row[-1]}")
    return 0
