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
``std`` in DLIO). Every figure comes from each run's ``dlio`` block in summary.json
(:mod:`harness.dlio_metrics`, DLIO 2.0.0's rules: AU = nominal compute of the steps but the first
over the wall less the first step's load and compute; samples/s over every step, the first
included, summed over ranks; MiB/s = samples/s x record length / 2^20, the record length being
the mean bytes the pipeline asked for per sample); a run written before the block has it computed
the same way from its tables. The expected AU is the scenario's ``thresholds.min_busy_pct``, or
90 % (MLPerf Storage's rule) when it sets none. The storage's own read rate, measured from /proc,
is beside it under ``harness``, which also names the runs.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import results
from harness.dlio_metrics import run_dlio_block
from harness.errors import HarnessError
from harness.export import ExportOptions
from harness.files import atomic_write
from harness.results.summary_file import DlioBlock

TEXT = True
FORMAT_VERSION = 2  # of this file's "harness" block; the rest is DLIO's shape
DEFAULT_AU_PCT = 90.0  # MLPerf Storage: AU >= 90 % for unet3d and resnet50
MiB = 2**20


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.pstdev(values)


def _finite(values: Sequence[tuple[str, Any]], name: str, left_out: list[str]) -> list[float]:
    """The finite ones of ``(run_id, value)``, in order; a NaN or an infinity (a hand-edited or
    damaged summary.json: JSON readers accept them) has no mean or stdev, so it is left out and
    said so in ``left_out``, rather than stopping the export or being written as invalid JSON."""
    kept = []
    for run_id, value in values:
        if value is None:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            kept.append(float(value))
        else:
            left_out.append(f"{run_id}: {name} is {value!r}, not a finite number: left out")
    return kept


def _figures(
    runs: Sequence[results.RunFolder],
    blocks: Sequence[DlioBlock | None],
    name: str,
    left_out: list[str],
) -> list[float]:
    """Field ``name`` of each run's DLIO block that has it and is finite, in order."""
    found = [
        (r.run_id, None if b is None else getattr(b, name))
        for r, b in zip(runs, blocks, strict=True)
    ]
    return _finite(found, name, left_out)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def dlio_summary(runs: Sequence[results.RunFolder]) -> dict[str, Any]:
    """The DLIO-shaped summary of the runs of one scenario (oldest first)."""
    first, last = runs[0], runs[-1]
    blocks = [run_dlio_block(run) for run in runs]
    left_out: list[str] = []
    au = _figures(runs, blocks, "au_pct", left_out)
    rate = _figures(runs, blocks, "train_throughput_samples_per_second", left_out)
    io = _figures(runs, blocks, "train_io_MB_per_second", left_out)
    read = [(run.run_id, run.metrics.get("read_MBps", {}).get("value")) for run in runs]
    storage = [v * 1e6 / MiB for v in _finite(read, "read_MBps", left_out)]  # MB/s -> MiB/s
    thresholds = (first.settings or {}).get("thresholds") or {}
    given = _finite([(first.run_id, thresholds.get("min_busy_pct"))], "min_busy_pct", left_out)
    expected = given[0] if given else DEFAULT_AU_PCT
    au_mean, au_stdev = _stats(au)
    rate_mean, rate_stdev = _stats(rate)
    io_mean, io_stdev = _stats(io)
    hardware = first.hardware_table
    accelerators = next((b.num_accelerators for b in blocks if b is not None), None) or (
        (first.summary.ranks if first.summary is not None else None) or 1
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
            "definition": next((b.definition for b in blocks if b is not None), None),
            "au_source": [None if b is None else b.au_source for b in blocks],
            "record_length": [
                None if b is None else _finite_or_none(b.record_length) for b in blocks
            ],
            "expected_au_percentage": expected,
            "au": "DLIO 2.0.0's AU: nominal compute time of every step but the first / (wall "
            "time - the first step's load and compute), mean over accelerators (au_source "
            "'measured': the timed compute, where no nominal time was drawn)",
            "train_throughput": "samples/s over every step, the first included, summed over "
            "accelerators (as DLIO 2.0.0)",
            "MB_per_second_unit": "MiB/s (2^20 bytes per second), as DLIO computes its MB/s",
            "train_io": "samples/s x record_length / 2^20; record_length: the mean bytes the "
            "pipeline asked for per sample",
            "storage_read_mean_MiB_per_second": _stats(storage)[0],
            "storage_read": "bytes the run's processes read from storage (/proc/<pid>/io)",
            "left_out": left_out,  # values that were not finite numbers, a sentence each
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
    for document in documents.values():
        for sentence in document["harness"]["left_out"]:
            print(f"warning: {document['harness']['scenario']}: {sentence}", file=sys.stderr)
    if target is None:
        only = next(iter(documents.values())) if len(documents) == 1 else documents
        json.dump(only, sys.stdout, indent=4, allow_nan=False)
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
            stream.write((json.dumps(document, indent=4, allow_nan=False) + "\n").encode())
        written.append(f"dlio: {file} ({document['harness']['scenario']})")
    return written
