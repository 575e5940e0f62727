"""Exporters: runs taken to the tools teams already use (``harness export``, ``harness run
--export``).

One registry, ``EXPORTERS`` (``harness.registry``): name -> the module that implements it,
imported only when asked for, so a missing optional package (MLflow, ClearML: ``pip install
'harness[export]'``) stops that exporter alone, with its reason. A module (a
``harness.registry.Exporter``) defines ``export(runs, target, options) -> list[str]`` (what it
did, a line each) and says with ``TEXT`` whether it writes a text format (then ``target`` None
means stdout).

* ``mlflow``     - mlflow_exporter: a tracking-store run per harness run (scenario as params,
                   headline metrics, time series as metric histories, summary and report files)
* ``clearml``    - clearml_exporter: the same as a ClearML task per run (offline mode: a
                   session zip to import later)
* ``prometheus`` - prometheus: the Prometheus text format for node_exporter's textfile collector
* ``dlio``       - dlio: a DLIO / MLPerf Storage-shaped summary.json, DLIO's key names

A new exporter is one module and one line in the registry.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from harness import registry
from harness.errors import HarnessError
from harness.registry import Exporter as ExporterProtocol

if TYPE_CHECKING:  # the registry is read by `harness --help`: no pandas until an export runs
    from harness import results

EXPORTERS = registry.EXPORTERS  # name -> its module
INSTALL_HINT = {"mlflow": "harness[export]", "clearml": "harness[export]"}


@dataclass(frozen=True)
class ExportOptions:
    """What the command line adds: the experiment (MLflow) or project (ClearML) name, a report
    folder whose report.html / report.pdf are attached, and whether to export a run again."""

    experiment: str = "harness"
    report: Path | None = None
    force: bool = False


Exporter: TypeAlias = "ExporterProtocol[list[results.RunFolder], ExportOptions]"


def exporter(name: str) -> Exporter:
    """The module of exporter ``name``; HarnessError naming the reason when it cannot load."""
    if name not in EXPORTERS:
        raise HarnessError(f"--to {name}: no such exporter; known: {', '.join(EXPORTERS)}")
    try:
        return cast("Exporter", EXPORTERS.load(name))
    except ImportError as exc:
        hint = f" (pip install '{INSTALL_HINT[name]}')" if name in INSTALL_HINT else ""
        raise HarnessError(f"exporter {name} not available: {exc}{hint}") from None


def export_runs(
    paths: list[Path], to: str, target: str | None, options: ExportOptions | None = None
) -> list[str]:
    """Export the runs under ``paths`` (run folders or folders of runs) with exporter ``to``."""
    from harness import results

    module = exporter(to)
    runs = [results.RunFolder.read(folder) for folder in results.find_runs(list(paths))]
    missing = [run.folder for run in runs if not run.has_summary]
    if missing:
        raise HarnessError(
            f"{missing[0]}: no {results.SUMMARY.file} (the run was killed before writing it): "
            "nothing to export"
        )
    if options is not None and options.report is not None:
        check_report(options.report)
    return module.export(runs, target, options or ExportOptions())


def check_report(folder: Path) -> list[Path]:
    """The report files of a report folder (report.html, report.pdf), refused when it has none."""
    found = [folder / name for name in ("report.html", "report.pdf") if (folder / name).is_file()]
    if not found:
        raise HarnessError(f"--report {folder}: no report.html or report.pdf in it")
    return found


# --- what every exporter takes from a run -----------------------------------------------------

_INDEXED = re.compile(r"^(?P<base>[^\[]+)\[(?P<index>[^\]]+)\]$")


def split_index(metric: str) -> tuple[str, str | None]:
    """``gpu_util_pct[0]`` -> (``gpu_util_pct``, ``0``); plain names -> (name, None)."""
    found = _INDEXED.match(metric)
    return (found["base"], found["index"]) if found else (metric, None)


def headline_metrics(run: results.RunFolder) -> dict[str, tuple[float, str, str]]:
    """Every measured metric of the summary: name -> (value, unit, direction); metrics that were
    not measured (None) are left out, never sent as zero."""
    out = {}
    for name, entry in run.metrics.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[name] = (float(value), str(entry.get("unit", "")), str(entry.get("direction", "")))
    return out


def flat_settings(run: results.RunFolder) -> dict[str, str]:
    """The resolved scenario as dotted keys (``pipeline.workers``: ``4``), values as text."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", run.settings or {})
    return flat


@dataclass
class Series:
    """One time series of a run: (seconds since the run started, value) pairs."""

    name: str
    unit: str
    t: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


# table, column, series name, unit: what the exporters send as histories
SERIES = (
    ("steps", "wait_s", "step_wait_s", "s"),
    ("steps", "compute_s", "step_compute_s", "s"),
    ("steps", "loss", "loss", ""),
    ("series_io", "read_MBps", "read_MBps", "MB/s"),
    ("series_io", "device_read_MBps", "device_read_MBps", "MB/s"),
    ("series_cpu", "cpu_pct", "cpu_pct", "% of a core"),
    ("series_gpu", "gpu_util_pct", "gpu_util_pct", "%"),
)


def time_series(run: results.RunFolder) -> Iterator[Series]:
    """The run's time series from its tables (rank 0's; steps at their end time), NaN left out."""
    for table, column, name, unit in SERIES:
        frame = run.table(table)
        if frame is None:
            continue
        if "rank" in frame:
            frame = frame[frame["rank"] == 0]
        if column not in frame:
            continue
        time_column = "t_end" if "t_end" in frame else "t"
        # the GPU table is long (a row per GPU per sample): one series per GPU
        groups = frame.groupby("gpu") if "gpu" in frame else [(None, frame)]
        for index, rows in groups:
            series = Series(name if index is None else f"{name}[{int(index)}]", unit)
            for t, value in zip(rows[time_column], rows[column], strict=True):
                if value == value and t == t:  # not NaN
                    series.t.append(float(t))
                    series.values.append(float(value))
            if series.values:
                yield series


def epoch_s(stamp: object) -> float | None:
    """A time stamp as the harness writes them (``2026-12-02T06:42:33+0000``) in seconds since
    the epoch; None when there is none."""
    from datetime import datetime

    try:
        return datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def started_epoch_s(run: results.RunFolder) -> float | None:
    """When the run started (its manifest's ``started``), in seconds since the epoch."""
    return epoch_s(run.started)


def finished_epoch_s(run: results.RunFolder) -> float | None:
    """When the run finished (its summary's ``finished``), in seconds since the epoch."""
    return epoch_s(run.finished)
