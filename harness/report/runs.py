"""Runs as the report sees them: read once, labelled, with what is missing said in words.

A report must be written for whatever a results folder holds: a complete run, a run stopped
half-way (``"complete": false``), a run killed so hard it never wrote its summary, a collector
that was not available. Only two things refuse the whole report (a ``HarnessError``, exit 2): a
folder that holds no run, and a file of a format version this harness cannot read; everything
else becomes a note the reader sees.

Labels name what a reader compares: the scenario, then the machine when the runs come from more
than one (several machines running one scenario are shown side by side, named by their hardware),
then the repeat when one scenario ran more than once on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import results
from harness.errors import HarnessError

TABLES = ("steps", "samples", "series_io", "series_cpu", "series_gpu")
# The study's categories (its Figure 7), in the order the report shows them.
CATEGORIES = ("video cached", "video decoded", "image collage")


@dataclass
class Run:
    """One run folder: its documents, its tables, and what could not be read."""

    folder: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame | None]
    missing: dict[str, str]  # table name -> why it is not there
    notes: list[str]  # what the reader must know before trusting the numbers
    has_summary: bool
    label: str = ""
    machine: str = ""
    machine_key: str = ""
    color: str = "#1f77b4"
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- identity -------------------------------------------------------------------------------

    @property
    def scenario(self) -> dict[str, Any]:
        return self.manifest.get("scenario") or {}

    @property
    def scenario_name(self) -> str:
        return str(self.summary.get("scenario") or self.scenario.get("name") or self.folder.name)

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.manifest.get("run_id") or self.folder.name)

    @property
    def complete(self) -> bool:
        return self.has_summary and self.summary.get("complete") is True

    @property
    def kind(self) -> str | None:
        return (self.scenario.get("dataset") or {}).get("kind")

    @property
    def mode(self) -> str | None:
        return (self.scenario.get("pipeline") or {}).get("mode")

    @property
    def category(self) -> str:
        """The study's experiment this run reproduces: video cached, video decoded, image
        collage; "other" for anything else."""
        if self.kind == "video" and self.mode in ("cached", "decoded"):
            return f"video {self.mode}"
        if self.kind == "image_collage":
            return "image collage"
        return "other"

    @property
    def page_cache(self) -> str | None:
        return (self.summary.get("page_cache") or {}).get("condition") or (
            self.scenario.get("pipeline") or {}
        ).get("page_cache")

    @property
    def condition(self) -> str:
        """How the run was fed and where it computed, in one line: the experiment, the backend,
        the page cache condition, the device and precision."""
        pipeline = self.scenario.get("pipeline") or {}
        parts = [self.category if self.category != "other" else str(self.kind or "unknown data")]
        if pipeline.get("backend"):
            parts.append(f"{pipeline['backend']} backend")
        if self.page_cache:
            parts.append(f"{self.page_cache} page cache")
        device = self.manifest.get("device")
        if device:
            precision = self.manifest.get("precision")
            parts.append(f"{device} {precision}" if precision else str(device))
        ranks = self.manifest.get("ranks") or self.summary.get("ranks")
        if isinstance(ranks, int) and ranks > 1:
            parts.append(f"{ranks} ranks")
        return " · ".join(parts)

    # --- numbers --------------------------------------------------------------------------------

    def value(self, name: str) -> float | None:
        entry = self.metrics.get(name)
        value = None if entry is None else entry.get("value")
        return None if value is None else float(value)

    def gpu_utils(self) -> list[float]:
        return [
            float(m["value"])
            for k, m in sorted(self.metrics.items())
            if k.startswith("gpu_util_pct[") and m.get("value") is not None
        ]

    def utilisation(self) -> tuple[float | None, str]:
        """The run's headline utilisation and what it is: the mean NVML GPU utilisation where
        a GPU was sampled, else the loop's busy % (compute time / wall time), said as such."""
        gpus = self.gpu_utils()
        if gpus:
            return float(np.mean(gpus)), "gpu"
        return self.value("busy_pct"), "busy"

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def unavailable(self, name: str) -> str:
        """Why a table (``series_gpu``, say) is not there, in the collector's own words."""
        collector = name.removeprefix("series_")
        reasons = (self.summary.get("collectors") or {}).get("unavailable") or {}
        if collector in reasons:
            return str(reasons[collector])
        if name in self.missing:
            return self.missing[name]
        table = self.tables.get(name)
        if table is not None and table.empty:
            return "empty: the run stopped before its first record"
        return "not available"

    @property
    def rate_hz(self) -> float | None:
        rate = (self.summary.get("collectors") or {}).get("rate_hz") or (
            self.scenario.get("collectors") or {}
        ).get("rate_hz")
        return float(rate) if rate else None

    def warmup_end(self) -> float | None:
        """Seconds from the run's start to the end of warm-up (the first measured step)."""
        steps = self.table("steps")
        if steps is None or steps.empty:
            return None
        measured = steps[~steps["warmup"].astype(bool)]
        if measured.empty:
            return float(steps["t_end"].max())
        return float(measured["t_start"].min())


def _document(folder: Path, kind: tuple[str, str]) -> dict[str, Any] | None:
    """A run document, None when the file is not there; a wrong format version refuses."""
    if not (folder / kind[0]).exists():
        return None
    return results.read_document(folder, kind)


def load_run(folder: Path) -> Run:
    """Read a run folder; HarnessError only for what no report can be made of."""
    manifest = _document(folder, results.MANIFEST)
    summary = _document(folder, results.SUMMARY)
    if manifest is None and summary is None:
        raise HarnessError(f"{folder}: holds no run (no manifest.json or summary.json)")
    notes: list[str] = []
    if summary is None:
        notes.append(
            "INCOMPLETE: no summary.json: the run stopped before writing its results (killed?); "
            "the numbers below are computed from the tables it left"
        )
    elif summary.get("complete") is not True:
        reason = summary.get("reason") or "no reason recorded"
        notes.append(
            f"INCOMPLETE: {reason}; the numbers cover only the steps finished before it stopped"
        )
    if manifest is None:
        notes.append("no manifest.json: scenario, hardware and software are unknown")
    tables: dict[str, pd.DataFrame | None] = {}
    missing: dict[str, str] = {}
    for name in TABLES:
        if (folder / f"{name}.parquet").exists():
            tables[name] = results.read_table(folder, name)
        else:
            tables[name] = None
            missing[name] = f"not recorded ({name}.parquet is missing)"
    run = Run(
        folder=folder,
        manifest=manifest or {},
        summary=summary or {},
        tables=tables,
        missing=missing,
        notes=notes,
        has_summary=summary is not None,
    )
    run.metrics = dict((summary or {}).get("metrics") or {})
    if summary is None and tables["steps"] is not None and tables["samples"] is not None:
        from harness.summary import loop_metrics

        run.metrics = loop_metrics(tables["steps"], tables["samples"])
    if run.metrics and run.value("busy_pct") is None and (summary or {}).get("complete") is True:
        notes.append("no step after warm-up was measured: the metrics are empty")
    return run


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run among ``paths`` (run folders or folders of runs), each once, labelled."""
    folders: list[Path] = []
    seen: set[Path] = set()
    for folder in results.find_runs([Path(p) for p in paths]):
        resolved = folder.resolve()
        if resolved not in seen:
            seen.add(resolved)
            folders.append(folder)
    runs = [load_run(folder) for folder in folders]
    label_runs(runs)
    return runs


# --- labels -------------------------------------------------------------------------------------


def _gpu_summary(hardware: dict[str, Any]) -> str:
    gpus = hardware.get("gpus")
    if isinstance(gpus, list) and gpus:
        names = [str(g.get("name", "?")) for g in gpus if isinstance(g, dict)]
        return ", ".join(f"{names.count(m)}× {m}" for m in sorted(set(names)))
    return "no GPU"


def machine_short(hardware: dict[str, Any]) -> str:
    """A machine in a few words for labels: host and GPUs."""
    if not hardware:
        return "unknown machine"
    return f"{hardware.get('hostname') or 'unknown host'} ({_gpu_summary(hardware)})"


def machine_name(hardware: dict[str, Any]) -> str:
    """A machine named by its hardware: host, GPUs (count x model) or "no GPU", CPU."""
    host = str(hardware.get("hostname") or "unknown host")
    gpu = _gpu_summary(hardware)
    cpu = hardware.get("cpu_model")
    cores = hardware.get("cpu_logical_cores")
    parts = [gpu]
    if isinstance(cpu, str) and not cpu.startswith("not available"):
        parts.append(f"{cpu} ×{cores}" if isinstance(cores, int) else cpu)
    return f"{host} ({'; '.join(parts)})" if hardware else "unknown machine"


def label_runs(runs: list[Run]) -> None:
    """Give each run its label, machine and colour (stable across every chart and table)."""
    short: dict[str, set[str]] = {}
    for run in runs:
        hardware = run.manifest.get("hardware") or {}
        run.machine = machine_name(hardware)
        run.machine_key = run.machine
        short.setdefault(machine_short(hardware), set()).add(run.machine)
    names = {full: name for name, fulls in short.items() for full in fulls if len(fulls) == 1}
    machines = list(dict.fromkeys(run.machine_key for run in runs))
    # A scenario run with several backends (the self-check) is told apart by its backend.
    backends: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        backends.setdefault((run.scenario_name, run.machine_key), set()).add(_backend(run))
    counts: dict[tuple[str, str, str], int] = {}
    for run in runs:
        key = (run.scenario_name, _backend(run), run.machine_key)
        counts[key] = counts.get(key, 0) + 1
    seen: dict[tuple[str, str, str], int] = {}
    for index, run in enumerate(runs):
        key = (run.scenario_name, _backend(run), run.machine_key)
        seen[key] = seen.get(key, 0) + 1
        label = run.scenario_name
        if len(backends[(run.scenario_name, run.machine_key)]) > 1:
            label += f" ({_backend(run)})"
        if counts[key] > 1:
            repeat = run.manifest.get("repeat")
            number = repeat["index"] if isinstance(repeat, dict) else seen[key]
            label += f" #{number}"
        if len(machines) > 1:
            label += f" on {names.get(run.machine, run.machine)}"
        run.label = label
        run.color = PALETTE[index % len(PALETTE)]


def _backend(run: Run) -> str:
    return str((run.manifest.get("scenario") or {}).get("pipeline", {}).get("backend", "torch"))


# Colour-blind-safe (Okabe-Ito, then Tableau), one per run, in the order runs are given.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#D55E00",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#8c564b",
    "#7f7f7f",
)


def grid(runs: list[Run]) -> tuple[list[str], list[list[Run | None]]]:
    """Panels for per-run charts: one column per machine (side by side), one row per scenario
    (and repeat) in the order first given. Returns column titles and rows of runs (None where a
    machine did not run that scenario)."""
    machines = list(dict.fromkeys(run.machine_key for run in runs))
    keys: list[tuple[str, int]] = []
    cells: dict[tuple[tuple[str, int], str], Run] = {}
    seen: dict[tuple[str, str], int] = {}
    for run in runs:
        count = seen.get((run.scenario_name, run.machine_key), 0)
        seen[(run.scenario_name, run.machine_key)] = count + 1
        key = (run.scenario_name, count)
        if key not in keys:
            keys.append(key)
        cells[(key, run.machine_key)] = run
    rows = [[cells.get((key, machine)) for machine in machines] for key in keys]
    return machines, rows


def by_category(runs: list[Run]) -> list[Run]:
    """Runs in the study's order (cached, decoded, collage, others), machines side by side."""
    order = {name: i for i, name in enumerate(CATEGORIES)}
    indexed = list(enumerate(runs))
    indexed.sort(key=lambda item: (order.get(item[1].category, len(order)), item[0]))
    return [run for _, run in indexed]
