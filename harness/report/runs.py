"""Runs as the report sees them: read once, labelled, with what is missing said in words.

A report must be written for whatever a results folder holds: a complete run, a run stopped
half-way (``"complete": false``), a run killed so hard it never wrote its summary, a collector
that was not available. Only two things refuse the whole report (a ``HarnessError``, exit 2): a
folder that holds no run, and a file of a format version this harness cannot read; everything
else becomes a note the reader sees. Capacity results (``capacity.json``) given among the runs are
read by :mod:`harness.report.capacity_data` (:func:`load_inputs` returns both).

Labels name what a reader compares: the scenario, then the machine when the runs come from more
than one (several machines running one scenario are shown side by side, named by their hardware),
then the repeat when one scenario ran more than once on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness import recovery, results
from harness.dlio_metrics import run_dlio_block
from harness.report.capacity_data import CapacityResults, load_capacity, split_inputs
from harness.results.summary_file import DlioBlock, ThresholdVerdict
from harness.stats import mean_gpu_util

# The study's categories (its Figure 7), in the order the report shows them.
CATEGORIES = ("video cached", "video decoded", "image collage")


@dataclass
class Run:
    """One run as the report sees it: the run folder as read (``source``), its metrics (from
    its tables when it has no summary), what could not be read, and its label and colour."""

    source: results.RunFolder
    notes: list[str]  # what the reader must know before trusting the numbers
    label: str = ""
    machine: str = ""
    color: str = "#1f77b4"
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- identity -------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.source.folder

    @property
    def manifest(self) -> results.RunManifest | None:
        """The manifest; None when the run has none (a note says so)."""
        return self.source.manifest

    @property
    def summary(self) -> results.SummaryFile | None:
        """The summary; None when the run has none (a note says so)."""
        return self.source.summary

    @property
    def hardware(self) -> dict[str, Any]:
        """The hardware table of the manifest; empty when none was recorded."""
        return self.environment("hardware") or {}

    @property
    def thresholds(self) -> list[ThresholdVerdict]:
        """The thresholds the summary judged; none without a summary."""
        return [] if self.summary is None else self.summary.thresholds

    def environment(self, table: Literal["hardware", "software"]) -> dict[str, Any] | None:
        """The manifest's hardware or software table; None when none was recorded."""
        return None if self.manifest is None else self.manifest.environment(table)

    @property
    def has_summary(self) -> bool:
        return self.source.has_summary

    @property
    def scenario(self) -> dict[str, Any]:
        return self.source.settings or {}

    @property
    def scenario_name(self) -> str:
        return self.source.scenario_name

    @property
    def run_id(self) -> str:
        return self.source.run_id

    @property
    def complete(self) -> bool:
        return self.source.complete

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
        condition = None if self.summary is None else self.summary.page_cache.get("condition")
        return condition or (self.scenario.get("pipeline") or {}).get("page_cache")

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
        manifest, summary = self.manifest, self.summary
        device = None if manifest is None else manifest.device
        if device:
            precision = None if manifest is None else manifest.precision
            parts.append(f"{device} {precision}" if precision else str(device))
        ranks = (manifest.ranks if manifest else None) or (summary.ranks if summary else None)
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
        mean = mean_gpu_util(self.metrics)
        if mean is not None:
            return mean, "gpu"
        return self.value("busy_pct"), "busy"

    @property
    def emulation(self) -> dict[str, Any] | None:
        """What the run emulated (compute and preprocessing profiles, server shape): the
        summary's ``emulation`` block, else the manifest's; None for a run on real compute."""
        for document in (self.summary, self.manifest):
            if document is not None and document.emulation is not None:
                return document.emulation
        return None

    def dlio(self) -> DlioBlock | None:
        """The run's figures by DLIO's definitions: its summary's block, else computed the same
        way from its tables (runs written before the block); None without steps."""
        return run_dlio_block(self.source)

    def table(self, name: str) -> pd.DataFrame | None:
        return self.source.table(name)

    def unavailable(self, name: str) -> str:
        """Why a table (``series_gpu``, say) is not there, in the collector's own words."""
        collector = name.removeprefix("series_")
        reasons = {} if self.summary is None else self.summary.collectors.unavailable
        if collector in reasons:
            return str(reasons[collector])
        if not self.source.has_table(name):
            return f"not recorded ({name}.parquet is missing)"
        table = self.table(name)
        if table is not None and table.empty:
            return "empty: the run stopped before its first record"
        return "not available"

    @property
    def rate_hz(self) -> float | None:
        rate = (None if self.summary is None else self.summary.collectors.rate_hz) or (
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


def load_run(folder: Path) -> Run:
    """Read a run folder; HarnessError only for what no report can be made of."""
    source = recovery.read_run(folder)  # a killed run: its summary from its segments
    # Every table now, so that one of another format version refuses before any chart is drawn.
    for name in results.TABLES:
        source.table(name)
    notes: list[str] = []
    if not source.has_summary:
        notes.append(
            "INCOMPLETE: no summary.json: the run stopped before writing its results (killed?); "
            "the numbers below are computed from the tables it left"
        )
    elif not source.complete:
        reason = source.reason or "no reason recorded"
        notes.append(
            f"INCOMPLETE: {reason}; the numbers cover only the steps finished before it stopped"
        )
    if source.manifest is None:
        notes.append("no manifest.json: scenario, hardware and software are unknown")
    run = Run(source, notes, metrics=source.metrics)
    steps, samples = source.table("steps"), source.table("samples")
    if not source.has_summary and steps is not None and samples is not None:
        from harness.summary import loop_metrics

        run.metrics = loop_metrics(steps, samples)
    if run.metrics and run.value("busy_pct") is None and source.complete:
        notes.append("no step after warm-up was measured: the metrics are empty")
    return run


def load_inputs(paths: list[Path]) -> tuple[list[Run], list[CapacityResults]]:
    """A report's inputs: every run among ``paths`` (run folders or folders of runs), each once,
    labelled, and the capacity results among them (a ``capacity.json`` or a folder holding
    one), read and checked. Refuses (HarnessError) only what no report can be made of."""
    run_paths, capacity_paths = split_inputs([Path(p) for p in paths])
    capacity = load_capacity(capacity_paths)
    return _load_run_folders(run_paths), capacity


def load_runs(paths: list[Path]) -> list[Run]:
    """Every run among ``paths`` (run folders or folders of runs), each once, labelled; capacity
    results among them are checked (see :func:`load_inputs`), not returned."""
    return load_inputs(paths)[0]


def _load_run_folders(paths: list[Path]) -> list[Run]:
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
        hardware = run.hardware
        run.machine = machine_name(hardware)
        short.setdefault(machine_short(hardware), set()).add(run.machine)
    names = {full: name for name, fulls in short.items() for full in fulls if len(fulls) == 1}
    machines = list(dict.fromkeys(run.machine for run in runs))
    # A scenario run with several backends (the self-check) is told apart by its backend.
    backends: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        backends.setdefault((run.scenario_name, run.machine), set()).add(_backend(run))
    counts: dict[tuple[str, str, str], int] = {}
    for run in runs:
        key = (run.scenario_name, _backend(run), run.machine)
        counts[key] = counts.get(key, 0) + 1
    seen: dict[tuple[str, str, str], int] = {}
    for index, run in enumerate(runs):
        key = (run.scenario_name, _backend(run), run.machine)
        seen[key] = seen.get(key, 0) + 1
        label = run.scenario_name
        if len(backends[(run.scenario_name, run.machine)]) > 1:
            label += f" ({_backend(run)})"
        if counts[key] > 1:
            repeat = None if run.manifest is None else run.manifest.repeat
            number = seen[key] if repeat is None else repeat.index
            label += f" #{number}"
        if len(machines) > 1:
            label += f" on {names.get(run.machine, run.machine)}"
        run.label = label
        run.color = PALETTE[index % len(PALETTE)]


def _backend(run: Run) -> str:
    return str(run.scenario.get("pipeline", {}).get("backend", "torch"))


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


def grid(runs: list[Run]) -> list[list[Run | None]]:
    """Panels for per-run charts: one column per machine (side by side), one row per scenario
    (and repeat) in the order first given. Returns rows of runs (None where a machine did not
    run that scenario)."""
    machines = list(dict.fromkeys(run.machine for run in runs))
    keys: list[tuple[str, int]] = []
    cells: dict[tuple[tuple[str, int], str], Run] = {}
    seen: dict[tuple[str, str], int] = {}
    for run in runs:
        count = seen.get((run.scenario_name, run.machine), 0)
        seen[(run.scenario_name, run.machine)] = count + 1
        key = (run.scenario_name, count)
        if key not in keys:
            keys.append(key)
        cells[(key, run.machine)] = run
    return [[cells.get((key, machine)) for machine in machines] for key in keys]


def by_category(runs: list[Run]) -> list[Run]:
    """Runs in the study's order (cached, decoded, collage, others), machines side by side."""
    order = {name: i for i, name in enumerate(CATEGORIES)}
    indexed = list(enumerate(runs))
    indexed.sort(key=lambda item: (order.get(item[1].category, len(order)), item[0]))
    return [run for _, run in indexed]
