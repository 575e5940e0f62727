"""A DLIO / MLPerf Storage-shaped ``summary.json`` per scenario, with DLIO's own key names.

DLIO (argonne-lcf/dlio_benchmark, ``dlio_benchmark/utils/statscounter.py``) writes a summary
whose ``metric`` block holds, for training: ``train_au_percentage`` (a list, one per epoch),
``train_au_mean_percentage``, ``train_au_stdev_percentage``, ``train_au_meet_expectation``
(``success`` when the mean AU is at least the expected AU, else ``fail``),
``train_throughput_samples_per_second`` (a list), its mean and stdev, and
``train_io_mean_MB_per_second`` / ``train_io_stdev_MB_per_second``, which DLIO computes as
samples/s x record length / 1024 / 1024: its "MB/s" is **MiB/s** (2^20 bytes), and so is ours.

Here one harness run plays the part of one of DLIO's epochs: the repeats of a scenario
(``--repeat N``) fill the lists, and mean and stdev are over them (population stdev, as numpy's
``std`` in DLIO). AU is the run's busy % (compute / wall of the measured steps: DLIO's AU). The
expected AU is the scenario's ``thresholds.min_busy_pct``, or 90 % (MLPerf Storage's rule) when
it sets none. The I/O rate is the bytes the pipeline read for the samples it consumed (as DLIO's,
the data rate of the training, not of the disk); the storage's own read rate, measured from
/proc, is beside it under ``harness``, which also names the runs.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import results
from harness.errors import HarnessError
from harness.export import ExportOptions
from harness.files import atomic_write

TEXT = True
FORMAT_VERSION = 1  # of this file's "harness" block; the rest is DLIO's shape
DEFAULT_AU_PCT = 90.0  # MLPerf Storage: AU >= 90 % for unet3d and resnet50
MiB = 2**20


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.pstdev(values)


def _values(runs: Sequence[results.RunFolder], name: str) -> list[float]:
    """The metric's value in each run that measured it, in order."""
    found = (run.metrics.get(name, {}).get("value") for run in runs)
    return [float(value) for value in found if value is not None]


def dlio_summary(runs: Sequence[results.RunFolder]) -> dict[str, Any]:
    """The DLIO-shaped summary of the runs of one scenario (oldest first)."""
    first, last = runs[0], runs[-1]
    au = _values(runs, "busy_pct")
    rate = _values(runs, "samples_per_s")
    io = [v * 1e6 / MiB for v in _values(runs, "requested_MBps")]  # MB/s -> MiB/s
    storage = [v * 1e6 / MiB for v in _values(runs, "read_MBps")]
    thresholds = (first.settings or {}).get("thresholds") or {}
    expected = thresholds.get("min_busy_pct")
    expected = DEFAULT_AU_PCT if expected is None else float(expected)
    au_mean, au_stdev = _stats(au)
    rate_mean, rate_stdev = _stats(rate)
    io_mean, io_stdev = _stats(io)
    hardware = first.hardware_table
    ranks = None if first.summary is None else first.summary.ranks
    accelerators = first.metrics.get("accelerators", {}).get("value") or (
        1 if ranks is None else ranks
    )
    metric: dict[str, Any] = {
        "train_au_percentage": au,
        "train_au_mean_percentage": au_mean,
        "train_au_meet_expectation": None
        if au_mean is None
        else ("success" if au_mean >= expected else "fail"),
        "train_au_stdev_percentage": au_stdev,
        "train_throughput_samples_per_second": rate,
        "train_throughput_mean_samples_per_second": rate_mean,
        "train_throughput_stdev_samples_per_second": rate_stdev,
        "train_io_mean_MB_per_second": io_mean,
        "train_io_stdev_MB_per_second": io_stdev,
    }
    return {
        "start": first.started,
        "end": last.finished,
        "num_accelerators": int(accelerators),
        "num_hosts": 1,
        "hostname": hardware.get("hostname"),
        "epochs": len(runs),
        "metric": metric,
        "harness": {
            "format": "harness-dlio-summary",
            "format_version": FORMAT_VERSION,
            "scenario": first.scenario_name,
            "runs": [r.run_id for r in runs],
            "complete": [r.complete for r in runs],
            "expected_au_percentage": expected,
            "au": "busy % of the measured steps: compute / wall time (DLIO's AU)",
            "MB_per_second_unit": "MiB/s (2^20 bytes per second), as DLIO computes its MB/s",
            "train_io": "bytes the pipeline read for the samples it consumed, per second",
            "storage_read_mean_MiB_per_second": _stats(storage)[0],
            "storage_read": "bytes the run's processes read from storage (/proc/<pid>/io)",
        },
    }


def export(runs: list[results.RunFolder], target: str | None, options: ExportOptions) -> list[str]:
    """One summary per scenario: to stdout (one scenario: its summary; several: an object keyed
    by scenario), or under ``target``: a file for one scenario, a folder of
    ``<scenario>/summary.json`` for several (or when ``target`` is a folder)."""
    groups: dict[str, list[results.RunFolder]] = {}
    for run in sorted(runs, key=lambda r: (r.repeat_index, r.run_id)):
        groups.setdefault(run.scenario_name, []).append(run)
    documents = {scenario: dlio_summary(group) for scenario, group in groups.items()}
    if target is None:
        only = next(iter(documents.values())) if len(documents) == 1 else documents
        json.dump(only, sys.stdout, indent=4)
        sys.stdout.write("\n")
        return []
    path = Path(target)
    if len(documents) == 1 and not path.is_dir():
        files = {path: next(iter(documents.values()))}
    else:
        files = {path / scenario / "summary.json": doc for scenario, doc in documents.items()}
    written = []
    for file, document in files.items():
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"--target {file}: cannot write: {exc.strerror or exc}") from None
        with atomic_write(file) as stream:
            stream.write((json.dumps(document, indent=4) + "\n").encode())
        written.append(f"dlio: {file} ({document['harness']['scenario']})")
    return written
