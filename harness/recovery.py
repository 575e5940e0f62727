"""A run killed before its summary (SIGKILL, the OOM killer, a power cut), read as an incomplete
run from the segments it streamed (``harness.stream``).

A run folder with ``manifest.json``, ``stream/`` segments and no ``summary.json`` gets a summary
built on reading, by the one path that builds every summary (``harness.summary.build_summary``),
from the steps and samples flushed before the process died and from ``stream/context.json``
(the page cache and dataset figures written at the start): ``complete`` false, and a reason that
says where the measurement ends. Collector series are kept raw in the segments (their rates are
derived by the collector at the end of a run), so their metrics are not recovered.

The recovered summary is computed on every read and never written: a folder without a summary
may be a run still going (a report of it shows it as incomplete so far, and must not leave a
summary that the run would then have to replace), and readers never write into run folders
(golden folders, read-only copies).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from harness import results, stream
from harness.errors import HarnessError, one_line
from harness.files import read_json
from harness.scenario import Scenario
from harness.summary import SAMPLE_COLUMNS, RankRecords, build_summary

KILLED = "killed: no summary written"


def read_run(folder: Path) -> results.RunFolder:
    """``RunFolder.read``, with the summary recovered from the segments of a killed run."""
    run = results.RunFolder.read(folder)
    if run.summary is None:
        run.summary = recovered_summary(run)
    return run


def recoverable(folder: Path) -> bool:
    """Whether ``folder`` is a run killed before its summary that left measured steps."""
    return (
        not (folder / results.SUMMARY.file).exists()
        and (folder / results.MANIFEST.file).exists()
        and (stream.stream_folder(folder) / stream.CONTEXT).exists()
        and bool(stream.segments(folder, "steps"))
    )


def recovered_summary(run: results.RunFolder) -> results.SummaryFile | None:
    """The summary of a killed run from its segments; None when it left none to build from
    (killed before the first flush, or a folder of an older harness)."""
    if run.summary is not None or run.manifest is None or not recoverable(run.folder):
        return None
    stream.sweep_stale(run.folder)  # a half-written segment of the killed writer
    context = read_json(stream.stream_folder(run.folder) / stream.CONTEXT)
    steps, samples = run.table("steps"), run.table("samples")
    if context is None or steps is None or steps.empty:
        return None
    if samples is None or samples.empty:
        samples = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    try:
        scenario = Scenario.model_validate(run.manifest.scenario)
    except ValueError as exc:
        raise HarnessError(f"{run.folder}: its manifest's scenario: {one_line(exc)}") from None
    steps = steps.assign(warmup=steps["warmup"].astype(bool))
    last = float(steps["t_end"].max())
    reason = f"{KILLED}; measured up to the last flush at t={last:.1f} s"
    unavailable = {
        name: "not summarised: the run was killed before its summary (raw series in stream/)"
        for name in scenario.collectors.enabled
        if stream.segments(run.folder, stream.RAW_SERIES + name)
    }
    parts = [
        RankRecords(rank=int(rank), steps=[], samples=[], unavailable=unavailable if i == 0 else {})
        for i, rank in enumerate(sorted(steps["rank"].unique()))
    ]
    return build_summary(
        run_id=run.manifest.run_id or run.folder.name,
        scenario=scenario,
        emulation=run.manifest.emulation,
        parts=parts,
        page_cache=context["page_cache"],
        dataset_manifest=context["dataset_manifest"],
        cache_manifest=context.get("cache_manifest"),
        evaluation=None,
        complete=False,
        reason=reason,
        finished=_last_flush(run.folder),
        tables=(steps, samples),
    )


def _last_flush(folder: Path) -> str:
    """When the last segment was written (local time, ISO 8601)."""
    times: list[float] = [p.stat().st_mtime for p in stream.segments(folder, "steps")]
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(max(times)))


__all__ = ["KILLED", "read_run", "recoverable", "recovered_summary"]
