"""Finishing a run: the files of its folder.

The manifest is written before the first step; after the loop, every rank's records are
gathered and written as the run's tables and summary at once, before the held-out evaluation
(``complete: false`` with the reason when the loop or the evaluation did not finish; the summary
is written again with the evaluation's figures), and the held-out thumbnails are kept. Every
file is written atomically: a full disk leaves one line naming the file, never a partial one.
What the numbers mean is decided in ``harness.summary`` (pure); this module only writes them.

Steps, samples and collector series are streamed to ``stream/`` segment files as the run goes
(``harness.stream``); ranks that see the run folder (rank 0, the emulated accelerators, torchrun
ranks on its host or a shared file system) write theirs there and send only the rest of their
records to rank 0; a rank that cannot see it keeps its rows in memory and sends them, as before.
At the end the tables are assembled from the segments plus the rows sent, the summary is
computed from the tables, and the segments are removed. ``stream/context.json`` keeps what a
summary needs beyond the rows (page cache, dataset), for a run killed before its summary.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness import pagecache, results, stream
from harness.collect import mounts
from harness.collect.procio import IoCollector
from harness.collect.sampler import Collector
from harness.env import environment
from harness.errors import HarnessError, one_line
from harness.files import write_json_atomic
from harness.pipeline.batch import Sample
from harness.run.prepare import PreparedRun, RunContext, read_root
from harness.scenario import Scenario
from harness.summary import (
    SAMPLE_COLUMNS,
    STEP_COLUMNS,
    JobHosts,
    RankRecords,
    Summary,
    build_summary,
    measured_window,
    sample_table,
    step_table,
)
from harness.train import distributed
from harness.train.loop import Evaluation, LoopRecords
from harness.train.model import cpu_threads_for
from harness.train.samples import keep_held_out_samples, model_predictor


@dataclass
class RunOutcome:
    folder: Path | None  # None on ranks other than 0
    complete: bool
    reason: str | None
    exit_code: int  # an ExitCode: OK, FAILED, BAD_INPUT, INTERRUPTED or TERMINATED
    summary: Summary | None


def write_manifest(
    prepared: PreparedRun,
    folder: Path,
    ranks: int,
    command: list[str],
    repeat: tuple[int, int] | None,
) -> None:
    """Create the run folder and write its manifest (before the first step)."""
    scenario, device = prepared.scenario, prepared.device
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise HarnessError(f"cannot create the run folder {folder}: {exc.strerror}") from None
    times = prepared.compute_times
    found = environment(Path(scenario.dataset.path))
    manifest = results.RunManifest(
        run_id=folder.name,
        scenario=scenario.model_dump(mode="json"),
        scenario_file=str(prepared.loaded.file),
        command=command,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ranks=ranks,
        device=str(device.torch_device),
        precision=device.precision,
        cpu_threads=cpu_threads_for(scenario) if times is None else 1,
        repeat=None if repeat is None else results.RepeatRecord(index=repeat[0], of=repeat[1]),
        emulation=prepared.emulation(),
        hardware=found["hardware"],
        software=found["software"],
    )
    results.write_manifest_file(folder, manifest)


def note_resident_at_end(prepared: PreparedRun, context: RunContext) -> None:
    """The dataset's bytes in the page cache once the loop has ended (before evaluation reads
    more), so that the summary can tell the dataset's pages the run brought in from the other
    files its processes read."""
    assert context.page_cache is not None  # noted where the page cache was prepared
    context.page_cache["resident_page_bytes_at_end"] = pagecache.resident_page_bytes(
        prepared.source.data_files()
    )


def gather_records(
    context: RunContext,
    records: LoopRecords,
    collectors: list[Collector],
    complete: bool,
    reason: str | None,
) -> tuple[list[RankRecords] | None, bool, str | None]:
    """Every rank's records, gathered on rank 0 (None on the others), with the run's verdict:
    a partner rank gone by now makes it incomplete, and rank 0 keeps its own records."""
    local = rank_records(context.ranks.rank, records, collectors)
    try:
        gathered = distributed.gather(local, context.ranks)
    except RuntimeError as exc:  # a partner rank is gone: keep what the others streamed
        reason = reason or f"run failed: {one_line(exc, 300)}"
        complete = False
        if not context.ranks.is_main:
            return None, complete, reason
        gathered = [local, *_surviving_ranks(context)]
    if not context.ranks.is_main or gathered is None:
        return None, complete, reason
    shutil.rmtree(context.folder / "ranks", ignore_errors=True)  # emulated ranks' pid files
    return gathered, complete, reason


# How long rank 0 waits, after a gather that failed, for the other ranks to say that their loop
# ended: they fail at the same collective within moments, a lost or hung host never says so.
ENDED_WAIT_S = 1.0


def _surviving_ranks(context: RunContext) -> list[RankRecords]:
    """After a failed gather on rank 0: the ranks that said their loop ended (the others are
    noted as silent in ``context.hosts``), as records whose rows are the segments they
    streamed to the run folder (ranks on this host; a surviving host elsewhere kept its rows,
    which are lost with the gather)."""
    ranks = context.ranks
    silent = distributed.silent_ranks(ranks, context.folder.name, ENDED_WAIT_S)
    if context.hosts is not None:
        context.hosts = JobHosts(context.hosts.joined, silent)
    return [
        RankRecords(rank=rank, steps=[], samples=[])
        for rank in range(1, ranks.world)
        if rank not in silent and stream.segments(context.folder, "steps", rank)
    ]


def write_results(
    context: RunContext,
    parts: list[RankRecords],
    evaluation: Evaluation | None,
    complete: bool,
    reason: str | None,
    prepared: PreparedRun,
) -> Summary:
    """The run's tables and summary from every rank's records (rank 0's first)."""
    write_tables(context.folder, parts)
    return write_run_summary(context, parts, evaluation, complete, reason, prepared)


def write_tables(folder: Path, parts: list[RankRecords]) -> None:
    """Steps, samples and each collector's series: what the run measured, as soon as it ends
    (each file atomic: a full disk leaves no partial table, and says which file in one line).
    Each rank's rows are its segments, then the rows it sent."""
    for name, columns in (("steps", STEP_COLUMNS), ("samples", SAMPLE_COLUMNS)):
        results.write_table(folder, name, assembled_table(folder, name, parts, columns))
    for name in sorted({n for part in parts for n in part.series}):
        frames = [part.series[name].assign(rank=part.rank) for part in parts if name in part.series]
        results.write_table(folder, f"series_{name}", pd.concat(frames, ignore_index=True))


def assembled_table(
    folder: Path, table: str, parts: list[RankRecords], columns: tuple[str, ...]
) -> pd.DataFrame:
    """Table ``table`` of every rank, rank 0's first: its segments, then the rows it sent."""
    build = step_table if table == "steps" else sample_table
    frames = []
    for part in parts:
        streamed = stream.read_segments(folder, table, part.rank)
        if len(streamed):
            frames.append(streamed.assign(rank=part.rank).reindex(columns=list(columns)))
        held = build([part])
        if len(held):
            frames.append(held)
    if not frames:
        return build(parts)  # no row: the empty table with its columns
    whole = pd.concat(frames, ignore_index=True)
    if table == "steps":
        whole["warmup"] = whole["warmup"].astype(bool)
    return whole


def stream_collectors(collectors: list[Collector], folder: Path, rank: int) -> None:
    """The collectors' raw rows go to ``folder``'s segments as they are sampled."""
    for collector in collectors:
        collector.stream_to(stream.SegmentWriter(folder, stream.RAW_SERIES + collector.name, rank))


def write_stream_context(context: RunContext, prepared: PreparedRun) -> None:
    """What a summary needs beyond the rows, kept beside the segments at the start of a run, so
    that a run killed before its summary can still be summarised (``harness.recovery``)."""
    dataset = {
        key: prepared.dataset_manifest[key]
        for key in ("classes", "labels", "total_bytes", "repetition")
        if key in prepared.dataset_manifest
    }
    cache = prepared.cache_manifest
    stream.stream_folder(context.folder).mkdir(exist_ok=True)
    write_json_atomic(
        stream.stream_folder(context.folder) / stream.CONTEXT,
        {
            "page_cache": dict(context.page_cache or {}),
            "dataset_manifest": dataset,
            "cache_manifest": None
            if cache is None
            else {k: cache[k] for k in ("frame_bytes", "mask_bytes", "expansion")},
        },
    )


def write_run_summary(
    context: RunContext,
    parts: list[RankRecords],
    evaluation: Evaluation | None,
    complete: bool,
    reason: str | None,
    prepared: PreparedRun,
) -> Summary:
    """The run's summary (written again, whole, when the held-out evaluation adds to it),
    computed from the run's tables; once it is written, the segments are no longer needed."""
    folder = context.folder
    assert context.page_cache is not None  # the results' writer prepared the page cache
    summary = build_summary(
        run_id=folder.name,
        scenario=context.scenario,
        emulation=prepared.emulation(),
        parts=parts,
        page_cache=context.page_cache,
        dataset_manifest=context.dataset_manifest,
        cache_manifest=context.cache_manifest,
        evaluation=evaluation,
        complete=complete,
        reason=reason,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        storage=storage_records(context.scenario),
        tables=(results.read_table(folder, "steps"), results.read_table(folder, "samples")),
        hosts=context.hosts,
    )
    results.write_summary(folder, summary)
    shutil.rmtree(stream.stream_folder(folder), ignore_errors=True)
    return summary


NO_PICTURES = "records datasets are read, never decoded, and train no model (MLPerf Storage)"


def keep_thumbnails(
    context: RunContext,
    prepared: PreparedRun,
    model: torch.nn.Module | None,
    read: list[Sample] | None = None,
) -> None:
    """The first held-out samples as pictures (``harness.train.samples``), listed in the
    manifest: after the run, outside every measurement; the prediction is the model's after
    the held-out evaluation (None: an emulated run, or no evaluation asked for). ``read``: the
    samples where the evaluation read them already."""
    if context.scenario.dataset.kind == "records":
        # records are never decoded: there is no picture to keep (the report says so)
        entry: dict[str, Any] = {"samples": [], "not_applicable": NO_PICTURES}
        results.update_document(context.folder, results.MANIFEST, {"thumbnails": entry})
        return
    if model is not None:
        no_prediction = None
    elif prepared.compute_times is not None:
        no_prediction = "emulated run: no model was trained, so there is no prediction"
    else:
        no_prediction = "training.eval_samples is 0: no held-out evaluation, so no prediction"
    entry = keep_held_out_samples(
        context.folder,
        source=prepared.source,
        plan=prepared.plan,
        crop=context.scenario.pipeline.crop,
        dataset_manifest=context.dataset_manifest,
        predict=None if model is None else model_predictor(model, context.device),
        no_prediction=no_prediction,
        read=read,
    )
    results.update_document(context.folder, results.MANIFEST, {"thumbnails": entry})


def storage_records(scenario: Scenario) -> list[dict[str, Any]]:
    """The mount under each folder the scenario names (its dataset, its frame cache) and which
    source counts the bytes read from it."""
    paths = [(Path(scenario.dataset.path), "dataset")]
    root, role = read_root(scenario)
    if role != "dataset":
        paths.append((root, role))
    return [mounts.locate(path, role).record() for path, role in paths]


def rank_records(
    rank: int,
    records: LoopRecords,
    collectors: list[Collector],
    window: tuple[float, float] | None = None,
) -> RankRecords:
    """What this rank measured: the loop's records (those not streamed to the run folder) and
    its collectors' series and metrics over the measured window (the steps after warm-up;
    ``window``: given, where the steps are other processes')."""
    records.close()  # the rows still held go to their segments
    working = [c for c in collectors if c.unavailable is None]
    if window is None:
        window = measured_window(records.steps.frame())
    metrics: dict[str, dict[str, Any]] = {}
    if window is not None:
        for collector in working:
            metrics.update(collector.summary(*window))
    io = next((c for c in collectors if c.name == "io"), None)
    read_bytes = None
    if io is not None and io.unavailable is None:
        frame = io.frame()
        if len(frame) >= 2:
            read_bytes = int(frame["read_bytes"].iloc[-1] - frame["read_bytes"].iloc[0])
    return RankRecords(
        rank=rank,
        steps=records.steps.held(),
        samples=records.samples.held(),
        errors=records.errors,
        series={c.name: c.frame() for c in working},
        collector_metrics=metrics,
        unavailable={
            **{c.name: c.unavailable for c in collectors if c.unavailable is not None},
            **{
                c.name: f"stopped sampling: {c.error}"
                for c in collectors
                if getattr(c, "error", None)
            },
        },
        sampler_cpu_s={c.name: c.cpu_seconds for c in collectors},
        io_read_bytes=read_bytes,
        io_device=getattr(io, "device", None),
        io_mount=io.mount.record() if isinstance(io, IoCollector) else None,
        io_missed_bytes=io.whole_run("missed_bytes") if isinstance(io, IoCollector) else None,
        io_link_rx_bytes=io.whole_run("link_rx_bytes") if isinstance(io, IoCollector) else None,
        unconsumed=records.unconsumed,
    )
