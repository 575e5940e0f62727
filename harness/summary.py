"""From a run's records to its summary: headline metrics, cross-checks, threshold verdicts.

Pure: tables and numbers in, a dictionary out; no clocks, no files, no devices. Every rank's
records (``RankRecords``) are gathered on rank 0; ``step_table`` and ``sample_table`` make the
run's tables of them, and ``build_summary`` the document written as ``summary.json``. The
measured window is the steps after warm-up (of every rank); a run stopped before it has none, and
its metrics are then None ("not measured"), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.dlio_metrics import dlio_block
from harness.pipeline.window import (
    NEVER,
    Timeline,
    WindowFigures,
    fill_batches,
    window_figures,
)
from harness.results.summary_file import (
    CollectorsRecord,
    HostEntry,
    Metric,
    SummaryFile,
    ThresholdVerdict,
)
from harness.scenario import Scenario, Thresholds
from harness.stats import Direction, mean_gpu_util, metric, percentiles, ratio

if TYPE_CHECKING:  # types only: the summary stays pure (no torch, no data readers imported)
    from harness.data.cache import CacheManifest
    from harness.data.manifest import DatasetManifest
    from harness.pagecache import PageCacheRecord
    from harness.train.distributed import HostIdentity
    from harness.train.loop import Evaluation

STEP_COLUMNS = (
    "step",
    "t_start",
    "t_end",
    "wait_s",
    "compute_s",
    "compute_nominal_s",  # the drawn compute time of an emulated step; NaN for a real one
    "barrier_s",
    "loss",
    "samples",
    "warmup",
    "rank",
)
SAMPLE_COLUMNS = ("t_end", "latency_ms", "requested_bytes", "first_time_bytes", "step", "rank")
# Samples fetched that no step took (still prefetched when the run stopped)
UNCONSUMED_COLUMNS = ("t_end", "requested_bytes", "first_time_bytes", "rank")
WINDOW_RULE = (
    "a fetch's bytes count in the window in which its read ended; a sample counts as consumed "
    "when its step takes it; in_flight: fetched, not yet taken, at each edge"
)


@dataclass
class RankRecords:
    """What one rank measured, sent to rank 0 at the end of a run."""

    rank: int
    steps: list[dict[str, Any]]  # rows of STEP_COLUMNS but "rank"
    samples: list[dict[str, Any]]  # rows of SAMPLE_COLUMNS but "rank"
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, message) skipped
    series: dict[str, pd.DataFrame] = field(default_factory=dict)  # collector -> time series
    collector_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # collector -> why not
    sampler_cpu_s: dict[str, float] = field(default_factory=dict)
    io_read_bytes: int | None = None  # the process tree's read_bytes over the run
    io_device: str | None = None  # the dataset's block device
    # the mount under the folder the run reads and who counts its bytes
    # (``harness.collect.mounts.StorageMount.record``); None: no io collector
    io_mount: dict[str, Any] | None = None
    io_missed_bytes: int | None = None  # the host's cache misses over the run (pipeline)
    io_link_rx_bytes: int | None = None  # bytes received over the link to the mount's server
    # samples fetched that no step took: rows of UNCONSUMED_COLUMNS but "rank"; None: the
    # backend does not log its fetches
    unconsumed: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class JobHosts:
    """The hosts of a job across several (torchrun's nodes), as its ranks joined at start, and
    the ranks that never said their loop had ended (on a lost or hung host)."""

    joined: list[HostIdentity]  # one per rank, in rank order
    silent: list[int] = field(default_factory=list)

    def groups(self) -> list[list[HostIdentity]]:
        """The ranks of each host, hosts in order of their first rank."""
        found: dict[tuple[str, str, int], list[HostIdentity]] = {}
        for identity in self.joined:
            key = (identity.name, identity.address, identity.node_rank)
            found.setdefault(key, []).append(identity)
        return list(found.values())

    def lost(self) -> list[list[HostIdentity]]:
        """The hosts with a rank that never said its loop ended."""
        return [group for group in self.groups() if any(i.rank in self.silent for i in group)]


def lost_host_sentence(hosts: JobHosts | None, steps: pd.DataFrame) -> str | None:
    """``host vm (10.226.0.2, node rank 1) lost at step 32: rank(s) 1 sent nothing``, or None
    when no host was lost. The step is the one the surviving ranks were in when the collective
    with the lost ranks failed (the first they did not finish)."""
    if hosts is None or not hosts.silent:
        return None
    step = int(steps["step"].max()) + 1 if len(steps) else 0
    named = []
    for group in hosts.lost():
        gone = [str(i.rank) for i in group if i.rank in hosts.silent]
        whole = len(gone) == len(group)  # else a rank died on a host whose others went on
        what = (
            f"host {group[0].label()}"
            if whole
            else f"rank(s) {', '.join(gone)} of host {group[0].label()}"
        )
        named.append(f"{what} lost at step {step}: rank(s) {', '.join(gone)} sent nothing")
    return "; ".join(named)


def host_table(
    hosts: JobHosts, parts: list[RankRecords], steps: pd.DataFrame, samples: pd.DataFrame
) -> list[HostEntry]:
    """Each host's identity, ranks and share of the work: samples/s (its ranks' sum), busy %
    (their mean) and read MB/s (:func:`host_read_MBps`); a lost host's are what its ranks
    streamed before they were lost, or None."""
    lost = {id(group[0]) for group in hosts.lost()}
    entries = []
    for group in hosts.groups():
        ranks = [identity.rank for identity in group]
        mine = loop_metrics(steps[steps["rank"].isin(ranks)], samples[samples["rank"].isin(ranks)])
        entries.append(
            HostEntry(
                name=group[0].name,
                address=group[0].address,
                node_rank=group[0].node_rank,
                ranks=ranks,
                lost=id(group[0]) in lost,
                samples_per_s=mine.get("samples_per_s", {}).get("value"),
                busy_pct=mine.get("busy_pct", {}).get("value"),
                read_MBps=host_figure([p for p in parts if p.rank in ranks], "read_MBps"),
            )
        )
    return entries


def host_figure(parts: list[RankRecords], name: str) -> float | None:
    """One host's ``name`` from its ranks' collector metrics: the sum of their process trees'
    where each rank counts its own reads (block devices), else the host-wide counter that one
    rank reports (NFS mount counters, the pipeline's miss counter on FUSE and network mounts:
    summing ranks of one host would count it once per rank)."""
    values = [
        value
        for part in parts
        if (value := part.collector_metrics.get(name, {}).get("value")) is not None
    ]
    if not values:
        return None
    per_process = all((part.io_mount or {}).get("counted_by", "block") == "block" for part in parts)
    return float(sum(values)) if per_process else float(values[0])


# Collector figures summed over hosts into the job's: a read rate and its bytes share a scope.
JOB_COLLECTOR_SUMS = ("read_MBps", "read_bytes")

# ``summary.json``'s model; run.py knows it by this name.
Summary = SummaryFile


def step_table(parts: list[RankRecords]) -> pd.DataFrame:
    """Every rank's steps, one row each (a record without a barrier time has 0, one without a
    drawn compute time NaN)."""
    defaults = {"barrier_s": 0.0, "compute_nominal_s": float("nan")}
    rows = [{**defaults, **row, "rank": part.rank} for part in parts for row in part.steps]
    steps = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
    steps["warmup"] = steps["warmup"].astype(bool)
    return steps


def sample_table(parts: list[RankRecords]) -> pd.DataFrame:
    rows = [dict(row, rank=part.rank) for part in parts for row in part.samples]
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def unconsumed_table(parts: list[RankRecords]) -> pd.DataFrame | None:
    """Every rank's samples fetched that no step took; None when a rank's backend does not log
    its fetches (then nobody knows how many there were)."""
    if any(part.unconsumed is None for part in parts):
        return None
    rows = [dict(row, rank=part.rank) for part in parts for row in part.unconsumed or []]
    return pd.DataFrame(rows, columns=list(UNCONSUMED_COLUMNS))


def fetch_timeline(
    steps: pd.DataFrame, samples: pd.DataFrame, unconsumed: pd.DataFrame | None
) -> Timeline:
    """Every sample fetched: consumed ones taken when their step's batch arrived, the others
    never (those the summary does not know of, with ``unconsumed`` None, are missing)."""
    arrival = steps.assign(taken=steps["t_start"] + steps["wait_s"])[["rank", "step", "taken"]]
    consumed = samples.merge(arrival, on=["rank", "step"], how="left")
    timeline = Timeline.of(
        consumed["t_end"], consumed["taken"].fillna(NEVER), consumed["requested_bytes"]
    )
    if unconsumed is None or unconsumed.empty:
        return timeline
    never = np.full(len(unconsumed), NEVER)
    return timeline + Timeline.of(unconsumed["t_end"], never, unconsumed["requested_bytes"])


def build_summary(
    *,
    run_id: str,
    scenario: Scenario,
    emulation: dict[str, Any] | None,
    parts: list[RankRecords],
    page_cache: PageCacheRecord,
    dataset_manifest: DatasetManifest,
    cache_manifest: CacheManifest | None,
    evaluation: Evaluation | None,
    complete: bool,
    reason: str | None,
    finished: str,
    storage: list[dict[str, Any]] | None = None,
    tables: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    hosts: JobHosts | None = None,
) -> SummaryFile:
    """The run's summary from what every rank measured (``parts``, rank 0's first); ``storage``:
    the mount of each path the scenario names and who counts its bytes; ``tables``: the run's
    steps and samples tables where they were streamed to files rather than held in ``parts``
    (``harness.stream``); ``hosts``: a job across several hosts, as its ranks joined (a lost
    host makes the run incomplete and judges no threshold)."""
    steps, samples = (step_table(parts), sample_table(parts)) if tables is None else tables
    unconsumed = unconsumed_table(parts)
    metrics = {
        k: {**v, "scope": "job"} for k, v in loop_metrics(steps, samples, unconsumed).items()
    }
    if emulation is not None:
        metrics["accelerators"] = metric(len(parts), "accelerators", "context")
        metrics["accelerators"]["scope"] = "job"
    metrics.update(collector_metrics(parts, hosts))
    metrics.update(
        {
            k: {**v, "scope": "job"}
            for k, v in storage_metrics(dataset_manifest, cache_manifest).items()
        }
    )
    if evaluation:
        metrics["miou"] = {**metric(evaluation["miou"], "", "higher"), "scope": "job"}
        metrics["miou_chance"] = {
            **metric(evaluation["miou_chance"], "", "context"),
            "scope": "job",
        }
    lost = lost_host_sentence(hosts, steps)
    if lost is not None:
        complete = False
        reason = lost if reason is None else f"{lost} ({reason})"
    read_parts = [part.io_read_bytes for part in parts if part.io_read_bytes is not None]
    read_bytes = sum(read_parts) if len(read_parts) == len(parts) else None  # a rank unknown: None
    requested = first_requested_bytes(samples, unconsumed) if len(samples) else None
    window = window_record(steps, samples, unconsumed, _fill_batches(scenario))
    never_consumed = None if unconsumed is None else int(unconsumed["first_time_bytes"].sum())
    counted_by = (parts[0].io_mount or {}).get("counted_by", "block")
    if counted_by == "pipeline":
        bytes_check = missed_cross_check(parts, requested, page_cache["condition"])
    else:
        bytes_check = bytes_cross_check(
            read_bytes,
            requested,
            page_cache["condition"],
            dataset_read_bytes(page_cache),
            never_consumed=never_consumed,
        )
    cross_checks = [
        bytes_check,
        busy_vs_gpu_check(metrics.get("busy_pct", {}).get("value"), mean_gpu_util(metrics)),
    ]
    errors = [error for part in parts for error in part.errors]
    corrupt: dict[str, int] = {}
    for path, _message in errors:
        corrupt[path] = corrupt.get(path, 0) + 1
    unavailable = {
        name + ("" if part.rank == 0 else f"[rank{part.rank}]"): why
        for part in parts
        for name, why in part.unavailable.items()
    }
    return SummaryFile(
        run_id=run_id,
        scenario=scenario.name,
        complete=complete,
        reason=reason,
        ranks=len(parts) if hosts is None else len(hosts.joined),
        hosts=None
        if hosts is None or (len(hosts.groups()) < 2 and not hosts.silent)
        else host_table(hosts, parts, steps, samples),
        missing_ranks=[] if hosts is None else sorted(hosts.silent),
        page_cache=dict(page_cache),  # the open record of summary.json
        labels=dataset_manifest["labels"],
        metrics={name: Metric.model_validate(entry) for name, entry in metrics.items()},
        cross_checks=cross_checks,
        thresholds=[
            ThresholdVerdict.model_validate(verdict)
            for verdict in threshold_verdicts(scenario.thresholds, metrics, not_judged=lost)
        ],
        collectors=CollectorsRecord(
            rate_hz=scenario.collectors.rate_hz,
            unavailable=unavailable,
            sampler_cpu_s=parts[0].sampler_cpu_s,
            io_device=parts[0].io_device,
            server_view=scenario.collectors.prometheus.name
            if "prometheus" in scenario.collectors.enabled
            else None,
        ),
        corrupt_files=corrupt,
        corrupt_samples=[{"file": p, "error": m} for p, m in errors[:100]],
        iou_per_class=None if evaluation is None else evaluation["iou_per_class"],
        warnings=run_warnings(
            page_cache,
            unavailable,
            CorruptRecord(corrupt, scenario.pipeline.on_corrupt),
            dataset_manifest,
            metrics,
        ),
        finished=finished,
        emulation=emulation,
        window=window,
        dlio=dlio_block(steps, samples),
        storage=storage,
    )


def _fill_batches(scenario: Scenario) -> int:
    pipeline = scenario.pipeline
    return fill_batches(pipeline.workers, pipeline.prefetch_factor)


def collector_metrics(
    parts: list[RankRecords], hosts: JobHosts | None = None
) -> dict[str, dict[str, Any]]:
    """Rank 0's collector metrics (its host's: scope ``host``), plus the other ranks' under
    ``name[rankN]``; read MB/s and read bytes are the job's: the sum over hosts of each host's
    figure (:func:`host_figure`), never a sum over the ranks of one host of a host-wide
    counter."""
    metrics: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, value in part.collector_metrics.items():
            key = name if part.rank == 0 or name not in metrics else f"{name}[rank{part.rank}]"
            metrics.setdefault(key, {**value, "scope": "host"})
    if len(parts) < 2:
        return metrics
    by_rank = {part.rank: part for part in parts}
    groups = (
        [[i.rank for i in group] for group in hosts.groups()]
        if hosts is not None
        else [sorted(by_rank)]  # one host
    )
    for name in JOB_COLLECTOR_SUMS:
        if name not in metrics:
            continue
        figures = [
            host_figure([by_rank[r] for r in ranks if r in by_rank], name) for ranks in groups
        ]
        found = [f for f in figures if f is not None]
        total = sum(found) if found else None
        metrics[name] = {**metric(total, metrics[name]["unit"], "context"), "scope": "job"}
    return metrics


def storage_metrics(
    dataset_manifest: DatasetManifest, cache_manifest: CacheManifest | None
) -> dict[str, dict[str, Any]]:
    """The footprint: compressed dataset bytes, frame cache bytes and their ratio; the dataset's
    distinct 4 KiB blocks and zstd ratio (a sample, measured when it was generated)."""
    out = {"storage_bytes": metric(dataset_manifest.get("total_bytes"), "B", "context")}
    repeated = dataset_manifest.get("repetition")  # what dedup or compression could exploit
    distinct = None if repeated is None else repeated.get("distinct_block_share")
    if repeated is not None and distinct is not None:
        out["distinct_block_pct"] = metric(100 * distinct, "%", "context")
        out["zstd_ratio"] = metric(repeated.get("compression_ratio"), "x", "context")
    if cache_manifest is not None:
        out["cache_bytes"] = metric(
            cache_manifest["frame_bytes"] + cache_manifest["mask_bytes"], "B", "context"
        )
        out["expansion"] = metric(cache_manifest["expansion"], "x", "context")
    return out


@dataclass(frozen=True)
class CorruptRecord:
    """The corrupt samples met, per file, and what the scenario said to do with them."""

    files: dict[str, int]
    on_corrupt: str  # pipeline.on_corrupt: "skip" or "fail"

    def sentence(self) -> str:
        samples, files = sum(self.files.values()), len(self.files)
        if self.on_corrupt == "skip":
            done = f"{samples} samples skipped from {files} corrupt file(s)"
        else:
            done = f"{samples} corrupt sample(s) in {files} file(s) stopped the run"
        return f"{done} (pipeline.on_corrupt is {self.on_corrupt})"


def run_warnings(
    page_cache: PageCacheRecord,
    unavailable: dict[str, str],
    corrupt: CorruptRecord,
    dataset_manifest: DatasetManifest,
    metrics: dict[str, dict[str, Any]],
) -> list[str]:
    """What a reader must know before trusting the numbers, a sentence each."""
    warnings = []
    if page_cache["dataset_bytes"] < page_cache["ram_bytes"]:
        warnings.append(
            f"the dataset ({page_cache['dataset_bytes'] / 1e9:.2f} GB) is smaller than RAM "
            f"({page_cache['ram_bytes'] / 1e9:.1f} GB): the page cache can hold all of it, so "
            "re-reads during the run (and every read of a warm run) measure memory, not storage"
        )
    fraction = page_cache["resident_fraction_at_start"]
    if page_cache.get("requested") == "cold" and page_cache["condition"] != "cold":
        warnings.append(
            f"not a cold start: {fraction:.1%} of the dataset was still in the page cache after "
            f"{page_cache.get('evictions', 1)} eviction(s) (pages another process has mapped or "
            "locked stay): reads of those pages measure memory, and the bytes cross-check is "
            "not expected to agree"
        )
    elif page_cache["condition"] == "cold" and fraction is not None and fraction > 0.05:
        warnings.append(  # run folders written before eviction was verified
            f"cold start: {fraction:.0%} of the dataset was still in the page cache after eviction"
        )
    for name, why in unavailable.items():
        warnings.append(f"collector {name}: {why}")
    if corrupt.files:
        warnings.append(corrupt.sentence())
    if str(dataset_manifest.get("labels", "")).startswith("derived:"):
        warnings.append(f"labels were derived ({dataset_manifest['labels']}), not given as masks")
    if metrics.get("busy_pct", {}).get("value") is None:
        warnings.append("no step after warm-up was measured: metrics are empty")
    return warnings


BYTES_AGREEMENT = 0.05  # collector and pipeline byte counts must agree this well in a cold run


def measured_window(steps: pd.DataFrame) -> tuple[float, float] | None:
    measured = steps[~steps["warmup"]] if len(steps) else steps
    if measured.empty:
        return None
    return float(measured["t_start"].min()), float(measured["t_end"].max())


def loop_metrics(
    steps: pd.DataFrame, samples: pd.DataFrame, unconsumed: pd.DataFrame | None = None
) -> dict[str, dict[str, Any]]:
    """samples/s, busy and data-wait %, fetch latency and batch wait percentiles, bytes asked
    (the fetches that ended in the window: ``unconsumed`` adds those no step took) and bytes
    consumed (the samples the window's steps took)."""
    window = measured_window(steps)
    metrics: dict[str, dict[str, Any]] = {
        "steps": metric(len(steps), "steps", "context"),
    }
    if window is None:
        unmeasured: tuple[tuple[str, str, Direction], ...] = (
            ("samples_per_s", "samples/s", "higher"),
            ("busy_pct", "%", "higher"),
            ("data_wait_pct", "%", "lower"),
        )
        for name, unit, direction in unmeasured:
            metrics[name] = metric(None, unit, direction)
        return metrics
    measured = steps[~steps["warmup"]]
    start, end = window
    wall = end - start
    per_rank = measured.groupby("rank")
    busy = [
        g["compute_s"].sum() / (g["t_end"].max() - g["t_start"].min()) * 100 for _, g in per_rank
    ]
    wait = [g["wait_s"].sum() / (g["t_end"].max() - g["t_start"].min()) * 100 for _, g in per_rank]
    barrier = [  # runs written before barrier_s was recorded had none
        g["barrier_s"].sum() / (g["t_end"].max() - g["t_start"].min()) * 100
        if "barrier_s" in g
        else 0.0
        for _, g in per_rank
    ]
    metrics["measured_steps"] = metric(len(measured), "steps", "context")
    metrics["samples_per_s"] = metric(measured["samples"].sum() / wall, "samples/s", "higher")
    metrics["busy_pct"] = metric(float(np.mean(busy)), "%", "higher")
    metrics["busy_pct_min"] = metric(float(np.min(busy)), "%", "higher")
    metrics["data_wait_pct"] = metric(float(np.mean(wait)), "%", "lower")
    metrics["barrier_pct"] = metric(float(np.mean(barrier)), "%", "lower")
    if len(busy) > 1:
        for rank, value in zip(per_rank.groups, busy, strict=True):
            metrics[f"busy_pct[rank{rank}]"] = metric(value, "%", "higher")
    consumed = samples.merge(measured[["rank", "step"]], on=["rank", "step"])
    for label, value in percentiles(consumed["latency_ms"] if len(consumed) else []).items():
        metrics[f"fetch_latency_{label}_ms"] = metric(value, "ms", "lower")
    for label, value in percentiles(measured["wait_s"] * 1000, (50.0, 99.0)).items():
        metrics[f"batch_wait_{label}_ms"] = metric(value, "ms", "lower")
    figures = window_figures(fetch_timeline(steps, samples, unconsumed), start, end)
    counted = len(samples) > 0  # no sample recorded: bytes not measured, not 0 MB/s
    metrics["requested_MBps"] = metric(
        figures.requested_MBps if counted else None, "MB/s", "context"
    )
    metrics["consumed_MBps"] = metric(figures.consumed_MBps if counted else None, "MB/s", "context")
    metrics["fill_s"] = metric(start - float(steps["t_start"].min()), "s", "context")
    losses = steps["loss"].dropna()  # emulated steps train no model: no loss
    metrics["loss_first"] = metric(float(losses.iloc[0]) if len(losses) else None, "", "lower")
    metrics["loss_last"] = metric(
        float(losses.tail(5).mean()) if len(losses) else None, "", "lower"
    )
    return metrics


def window_record(
    steps: pd.DataFrame, samples: pd.DataFrame, unconsumed: pd.DataFrame | None, fill: int
) -> dict[str, Any] | None:
    """``summary.json``'s ``window``: the measured window by the window rule (what was fetched,
    consumed, and in flight at each edge), the time before it (the pipeline filling and the
    warm-up: ``fill``) apart, whether the window began after the pipeline's ``fill`` batches
    had been consumed, and the samples fetched that no step took (None: not logged). None
    without a measured step."""
    window = measured_window(steps)
    if window is None:
        return None
    start, end = window
    timeline = fetch_timeline(steps, samples, unconsumed)
    measured = steps[~steps["warmup"]]
    first_measured = int(measured.groupby("rank")["step"].min().min())
    before: WindowFigures = window_figures(timeline, float(steps["t_start"].min()), start)
    inside = window_figures(timeline, start, end).record()
    if unconsumed is None:  # the samples still prefetched at the end are not known
        inside["in_flight_at_end"] = None
    return {
        "rule": WINDOW_RULE,
        "fill_batches": fill,
        "after_fill": first_measured >= fill,
        "in_flight_known": unconsumed is not None,
        "measured": inside,
        "fill": before.record(),
        "never_consumed": None
        if unconsumed is None
        else {
            "samples": len(unconsumed),
            "bytes": int(unconsumed["requested_bytes"].sum()),
            "first_time_bytes": int(unconsumed["first_time_bytes"].sum()),
        },
    }


def first_requested_bytes(samples: pd.DataFrame, unconsumed: pd.DataFrame | None) -> int | None:
    """Bytes the pipeline asked for the first time over the run: the samples steps took and
    those fetched that none took (prefetched when the run stopped: read all the same)."""
    frames = [samples] if unconsumed is None else [samples, unconsumed]
    total = pd.concat([f["first_time_bytes"] for f in frames]).sum(min_count=1)
    return None if pd.isna(total) else int(total)


def dataset_read_bytes(page_cache: PageCacheRecord) -> int | None:
    """Bytes of the dataset's own files the kernel brought into memory during a cold run: its
    resident pages at the end of the loop less those at the start, in bytes of whole pages
    (``mincore``, over the host's page cache: whoever read them). None when not measured
    (warm runs, runs on several hosts, run folders written before it was)."""
    end = page_cache.get("resident_page_bytes_at_end")
    start = page_cache.get("resident_page_bytes_at_start")
    if end is None or start is None or page_cache.get("condition") != "cold":
        return None
    return max(0, int(end) - int(start))


def bytes_cross_check(
    read_bytes: int | None,
    requested_bytes: int | None,
    condition: str,
    dataset_read: int | None = None,
    *,
    never_consumed: int | None = None,
) -> dict:
    """Bytes the kernel says the run's processes read vs bytes the pipeline asked for the first
    time (page by page, per host: a page any rank or worker of the host asked for before is
    served by the page cache), over the whole run. In a cold run they agree; far fewer read
    bytes mean the page cache served the data (the run measured memory, not storage), far more
    mean read-ahead or other reads. Only a verified cold start (``condition`` "cold") is
    expected to agree.

    ``dataset_read`` (the dataset's pages that became resident during the run, from
    ``mincore``) tells the two kinds of "more" apart: reads of the dataset's files beyond what
    the pipeline asked for (read-ahead: a real disagreement) and reads of other files by the
    run's processes (libraries paged in, file-system metadata), which are reported apart as
    ``other_read_bytes`` and do not make the pipeline's count wrong.

    ``requested_bytes`` counts what was asked for, consumed or not: samples still prefetched
    when the run stopped were read all the same; ``never_consumed`` (their first-time bytes,
    part of ``requested_bytes``; None: the backend does not log them) is shown apart."""
    share = ratio(read_bytes, requested_bytes)
    on_dataset = ratio(dataset_read, requested_bytes)
    other = (
        None if read_bytes is None or dataset_read is None else max(0, read_bytes - dataset_read)
    )
    explained = (
        share is not None
        and on_dataset is not None
        and abs(share - 1) > BYTES_AGREEMENT
        and abs(on_dataset - 1) <= BYTES_AGREEMENT
        and share > 1
    )
    if share is None:
        verdict = "not available"
    elif abs(share - 1) <= BYTES_AGREEMENT:
        verdict = f"agree within {BYTES_AGREEMENT:.0%}"
    elif explained:
        verdict = (
            f"agree within {BYTES_AGREEMENT:.0%} on the dataset's files (mincore: "
            f"{on_dataset:.2f}x); the run's processes also read {(other or 0) / 1e6:.1f} MB of "
            "other files (libraries paged in, file-system metadata)"
        )
    elif share < 1:
        verdict = f"storage served {share:.0%} of the bytes asked for: the rest came from memory"
    else:
        verdict = f"storage read {share:.2f}x the bytes asked for (read-ahead or other reads)"
        if on_dataset is not None:
            verdict += f"; {on_dataset:.2f}x of them on the dataset's own files (mincore)"
    agrees = None if share is None else abs(share - 1) <= BYTES_AGREEMENT or explained
    return {
        "name": "bytes read (collector) vs bytes first requested (pipeline)",
        "read_bytes": read_bytes,
        "first_requested_bytes": requested_bytes,
        "never_consumed_first_requested_bytes": never_consumed,
        "ratio": None if share is None else round(share, 4),
        "dataset_read_bytes": dataset_read,
        "dataset_ratio": None if on_dataset is None else round(on_dataset, 4),
        "other_read_bytes": other,
        "page_cache": condition,
        "verdict": verdict,
        "expected": condition == "cold",
        "ok": None if share is None or condition != "cold" else agrees,
    }


# The bytes a network file system moves for a byte of file data, beyond it: TCP/IP and Ethernet
# headers, the protocol's own framing and its metadata calls (open, stat, close per file).
# Measured once in the lab (sshfs over a veth pair, cold, every file read whole: 2.6 % on the
# quick frame cache's 17 kB files, 0.4 % on the collage's 4.6 MB ones; docs/network-storage.md):
# the middle, so that both agree within BYTES_AGREEMENT. Other file systems get the same
# allowance until measured.
LINK_OVERHEAD = {"fuse.sshfs": 0.015}
DEFAULT_LINK_OVERHEAD = 0.015


def missed_cross_check(
    parts: list[RankRecords], requested_bytes: int | None, condition: str
) -> dict[str, Any]:
    """On a mount the kernel does not count per process (FUSE, others): the pipeline's cache
    misses (the run's read figure) against the bytes that crossed the link to the mount's
    server, less the protocol's overhead; with no link known, against the bytes first asked
    for (in a cold run every page first asked for is a miss). Summed over hosts."""
    mount = parts[0].io_mount or {}
    missed_parts = [p.io_missed_bytes for p in parts if p.io_missed_bytes is not None]
    missed = sum(missed_parts) if missed_parts else None
    link_parts = [p.io_link_rx_bytes for p in parts if p.io_link_rx_bytes is not None]
    link = sum(link_parts) if link_parts and mount.get("interface") else None
    overhead = LINK_OVERHEAD.get(str(mount.get("fs_type")), DEFAULT_LINK_OVERHEAD)
    reference: float | None
    if link is not None:
        name = "bytes read (pipeline cache misses) vs bytes over the link (less protocol overhead)"
        reference = link / (1 + overhead)
        against = f"the link ({mount.get('interface')}: {link / 1e6:.1f} MB received"
        against += f", {reference / 1e6:.1f} MB of it file data at {overhead:.0%} overhead)"
    else:
        name = "bytes read (pipeline cache misses) vs bytes first requested (pipeline)"
        reference = None if requested_bytes is None else float(requested_bytes)
        against = "the bytes first asked for"
    share = ratio(missed, reference)
    if share is None:
        verdict = "not available"
    elif abs(share - 1) <= BYTES_AGREEMENT:
        verdict = f"agree within {BYTES_AGREEMENT:.0%}: {share:.2f}x {against}"
    elif share < 1:
        verdict = (
            f"the pipeline's misses are {share:.2f}x {against}: the link carried more than the "
            "misses (read-ahead beyond what was asked, other traffic, or metadata)"
        )
    else:
        verdict = f"the pipeline's misses are {share:.2f}x {against}"
    return {
        "name": name,
        "read_bytes": missed,
        "first_requested_bytes": requested_bytes,
        "link_rx_bytes": link,
        "link_overhead": overhead if link is not None else None,
        "ratio": None if share is None else round(share, 4),
        "page_cache": condition,
        "verdict": verdict,
        "expected": condition == "cold",
        "ok": None if share is None or condition != "cold" else abs(share - 1) <= BYTES_AGREEMENT,
    }


def busy_vs_gpu_check(busy_pct: float | None, gpu_util_pct: float | None) -> dict:
    """The loop's busy % against the mean NVML utilisation of the GPUs (what MLPerf computes vs
    what the GPU says)."""
    difference = None if busy_pct is None or gpu_util_pct is None else gpu_util_pct - busy_pct
    return {
        "name": "loop busy % vs NVML GPU utilisation %",
        "busy_pct": busy_pct,
        "gpu_util_pct": gpu_util_pct,
        "difference_pct_points": None if difference is None else round(difference, 2),
        "verdict": "not available (no GPU)"
        if gpu_util_pct is None
        else "not available (no measured step)"
        if difference is None
        else f"NVML reads {difference:+.1f} points against the loop's busy %",
    }


def threshold_verdicts(
    thresholds: Thresholds, metrics: dict[str, dict], not_judged: str | None = None
) -> list[dict[str, Any]]:
    """Each threshold the scenario sets, with the measured value and pass/fail; with
    ``not_judged`` (why: a host was lost) none passes or fails: ``pass`` is None and the
    verdict's ``reason`` says why."""
    checks = (
        ("min_busy_pct", "busy_pct", "min"),
        ("min_gpu_util_pct", "gpu_util_pct", "min"),
        ("min_samples_per_s", "samples_per_s", "min"),
        ("max_data_wait_pct", "data_wait_pct", "max"),
        ("max_fetch_latency_p99_ms", "fetch_latency_p99_ms", "max"),
    )
    verdicts = []
    for setting, name, kind in checks:
        limit = getattr(thresholds, setting)
        if limit is None:
            continue
        if name == "gpu_util_pct":
            value = mean_gpu_util(metrics)
        else:
            value = metrics.get(name, {}).get("value")
        passed = None if value is None else (value >= limit if kind == "min" else value <= limit)
        verdict = {"threshold": setting, "metric": name, "limit": limit, "value": value}
        if not_judged is not None:
            verdict.update({"pass": None, "reason": f"not judged: {not_judged}"})
        else:
            verdict["pass"] = passed
        verdicts.append(verdict)
    return verdicts
