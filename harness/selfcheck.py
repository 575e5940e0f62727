"""``harness selfcheck``: every data path the harness has, on this machine, in one command.

A self-check plan (YAML) lists scenarios and, for each, the backends to try with per-backend
overrides. The self-check prepares the data (generate, build the frame cache), runs every
(scenario, backend) pair for a fixed measured time, and ends with a table, ``selfcheck.json``
and the report of all its runs. A backend that this machine lacks, or that cannot read a
scenario (DALI's video reader without a GPU), is a row saying why, not a failure; a run that
fails is a row with its reason, and the self-check goes on with the next one.

``--gpu`` uses the GPU plan (``scenarios/gpu/selfcheck.yaml``: 1080p video, 512x512 crops, U-Net
64 in bf16) and refuses to start on a machine without a CUDA GPU; without it, the quick plan runs
on the CPU.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from harness import results
from harness.errors import ExitCode, HarnessError, ScenarioError
from harness.scenario import LoadedScenario, Model, load_scenario, read_yaml, validate_model
from harness.stats import mean_gpu_util

if TYPE_CHECKING:
    from harness.run import RunOutcome

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
GPU_PLAN = SCENARIOS / "gpu" / "selfcheck.yaml"
CPU_PLAN = SCENARIOS / "quick" / "selfcheck.yaml"
SELFCHECK = results.DocumentKind("selfcheck.json", "harness-selfcheck")


class PlannedRun(Model):
    scenario: Annotated[str, Field(min_length=1)]  # relative to the plan file
    # backend -> overrides (``key.path=value``) for that backend's run only
    backends: Annotated[dict[str, list[str]], Field(min_length=1)]


class SelfCheckPlan(Model):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    runs: Annotated[list[PlannedRun], Field(min_length=1)]


@dataclass
class Row:
    """One line of the table: a scenario with a backend, and what became of it."""

    scenario: str
    backend: str
    # "ok"; "not available" (backend missing); "refused" (it cannot read this data); "failed"
    status: str
    note: str = ""
    run: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


# (column title, metric key, digits): the table's measured columns
COLUMNS = (
    ("samples/s", "samples_per_s", 1),
    ("GPU util %", "gpu_util_pct", 1),
    ("busy %", "busy_pct", 1),
    ("read MB/s", "read_MBps", 1),
    ("data-wait %", "data_wait_pct", 1),
)


def is_plan(path: Path) -> bool:
    """A self-check plan is a YAML mapping with a ``runs`` list."""
    return "runs" in read_yaml(path)


def load_plan(path: Path) -> SelfCheckPlan:
    return validate_model(path, read_yaml(path), SelfCheckPlan)


def planned_scenarios(
    plan_file: Path, plan: SelfCheckPlan, overrides: list[str]
) -> list[tuple[PlannedRun, LoadedScenario]]:
    """Each planned run with its scenario loaded (the user's overrides applied)."""
    from harness.pipeline import BACKENDS

    problems: list[str] = []
    loaded = []
    for index, planned in enumerate(plan.runs):
        unknown = [name for name in planned.backends if name not in BACKENDS]
        if unknown:
            problems.append(
                f"{plan_file}: runs.{index}.backends: unknown backend {unknown[0]!r} "
                f"(known: {', '.join(BACKENDS)})"
            )
        try:
            loaded.append((planned, load_scenario(plan_file.parent / planned.scenario, overrides)))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return loaded


def _table_metrics(folder: Path | None) -> dict[str, float | None]:
    """The table's measured columns, from the summary the run wrote (none without one)."""
    metrics = {} if folder is None else results.RunFolder.read(folder).metrics

    def value(key: str) -> float | None:
        found = metrics.get(key, {}).get("value")
        return None if found is None or not math.isfinite(found) else float(found)

    row = {key: value(key) for _title, key, _digits in COLUMNS if key != "gpu_util_pct"}
    row["gpu_util_pct"] = mean_gpu_util(metrics)
    return row


def run_selfcheck(
    *,
    gpu: bool,
    plan_file: Path | None,
    overrides: list[str],
    duration_s: float | None,
    results_root: Path,
    report_dir: Path,
    quiet: bool,
) -> int:
    """Run the plan; print the table; write selfcheck.json and the report. Exit code: 0 when
    every run that could start finished, 1 when one failed."""
    import torch

    from harness.data import prepare_datasets
    from harness.data.cache import build_caches

    if gpu and not torch.cuda.is_available():
        raise HarnessError(
            f"selfcheck --gpu: torch sees no CUDA GPU (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}); run `harness selfcheck` for the CPU checks"
        )
    plan_file = plan_file or (GPU_PLAN if gpu else CPU_PLAN)
    plan = load_plan(plan_file)
    timing = [f"training.duration_s={duration_s}", "training.steps=null"] if duration_s else []
    planned = planned_scenarios(plan_file, plan, [*overrides, *timing])
    started = time.monotonic()
    scenarios = [loaded.scenario for _planned, loaded in planned]
    prepare_datasets(scenarios)
    build_caches(scenarios)

    rows: list[Row] = []
    folders: list[Path] = []
    pairs = [(base, b, o) for planned_run, base in planned for b, o in planned_run.backends.items()]
    for base, backend, backend_overrides in pairs:
        extra = [*overrides, *timing, f"pipeline.backend={backend}", *backend_overrides]
        row, outcome = _check_one(base, backend, extra, results_root, quiet)
        rows.append(row)
        _progress(row, quiet)
        if outcome is None:
            continue
        if outcome.folder is not None:
            folders.append(outcome.folder)
        if outcome.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):  # keep what ran
            break
    elapsed = time.monotonic() - started
    print(format_table(rows))
    print(f"self-check {plan.name}: {len(rows)} rows in {elapsed:.0f} s")
    _write_outputs(rows, folders, plan_file, gpu, elapsed, report_dir)
    return ExitCode.FAILED if any(row.status == "failed" for row in rows) else ExitCode.OK


def _check_one(
    base: LoadedScenario, backend: str, overrides: list[str], results_root: Path, quiet: bool
) -> tuple[Row, RunOutcome | None]:
    """One row of the table: the scenario ``base`` read by ``backend``, run unless refused or
    not available (then no outcome)."""
    from harness.pipeline import backend_unavailable
    from harness.run import run_scenario
    from harness.summary_lines import summary_lines

    try:
        loaded = load_scenario(base.file, overrides)
    except ScenarioError as exc:  # e.g. nvdec asked for an image scenario
        return Row(base.scenario.name, backend, "refused", "; ".join(exc.problems)), None
    name = loaded.scenario.name
    reason = backend_unavailable(backend)
    if reason is not None:
        return Row(name, backend, "not available", reason), None
    command = ["harness", *sys.argv[1:]]
    try:
        outcome = run_scenario(loaded, results_root=results_root, command=command, quiet=quiet)
    except HarnessError as exc:  # refused before any work: this backend cannot read this
        return Row(name, backend, "refused", str(exc)), None
    if outcome.folder is not None and outcome.summary is not None and not quiet:
        print("\n".join(summary_lines(outcome.summary, outcome.folder)))
    metrics = _table_metrics(outcome.folder)
    status = "ok" if outcome.complete else "failed"
    run = None if outcome.folder is None else str(outcome.folder)
    return Row(name, backend, status, outcome.reason or "", run, metrics), outcome


def _write_outputs(
    rows: list[Row],
    folders: list[Path],
    plan_file: Path,
    gpu: bool,
    elapsed: float,
    report_dir: Path,
) -> None:
    """selfcheck.json (the table) and, when a run has a folder, the report of the runs."""
    report_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "plan": str(plan_file),
        "gpu": gpu,
        "elapsed_s": round(elapsed, 1),
        "rows": [row.__dict__ for row in rows],
    }
    print(f"self-check table: {results.write_document(report_dir, SELFCHECK, document)}")
    if folders:
        from harness.report import write_report

        html, pdf = write_report(folders, report_dir)
        print(f"report: {html}\nreport: {pdf}")


def _progress(row: Row, quiet: bool) -> None:
    if not quiet:
        print(f"selfcheck: {row.scenario} with {row.backend}: {row.status} {row.note}".rstrip())


def format_table(rows: list[Row]) -> str:
    """The self-check's table: one line per (scenario, backend), measured columns, then notes."""
    titles = ["scenario", "backend", *(title for title, _key, _digits in COLUMNS), "status"]
    lines = []
    for row in rows:
        cells = [row.scenario, row.backend]
        for _title, key, digits in COLUMNS:
            value = row.metrics.get(key)
            cells.append("-" if value is None else f"{value:.{digits}f}")
        status = row.status if not row.note else f"{row.status}: {row.note}"
        cells.append(status)
        lines.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(titles, *lines, strict=False)]
    widths[-1] = len(titles[-1])  # the status column is left ragged

    def fmt(cells: list[str]) -> str:
        parts = [
            str(cell).ljust(width) if i < 2 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells[:-1], widths[:-1], strict=True))
        ]
        return "  ".join([*parts, str(cells[-1])])

    return "\n".join([fmt(titles), *(fmt(cells) for cells in lines)])
