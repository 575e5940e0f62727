"""``summary.json``: a run's results, one model for the writer (``harness.summary``) and every
reader (``RunFolder``, report, compare, export, self-check).

A run that stopped early still writes its summary: ``complete`` is then false and ``reason``
says why in the words the run printed. A run killed before it could write one has no
``summary.json`` at all; readers say so (``RunFolder.has_summary``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.results.document import (
    SUMMARY,
    OpenRecord,
    RunDocument,
    read_model,
    write_model,
)
from harness.stats import Direction


class Metric(OpenRecord):
    """One number of the summary; ``value`` None means "not measured", never zero."""

    value: float | None
    unit: str
    direction: Direction  # which way is better; "context" for figures that are neither
    # whose figure it is: the whole job's (every host's ranks), or one host's (rank 0's host;
    # ``name[rankN]``: rank N's host); files of format version 1 have none
    scope: Literal["job", "host"] | None = None


class ThresholdVerdict(OpenRecord):
    """One threshold the scenario set, the value measured and whether it passed."""

    threshold: str  # the scenario's setting, "min_busy_pct"
    metric: str  # the metric it judges, "busy_pct"
    limit: float
    value: float | None
    passed: bool | None = Field(alias="pass")  # None: not measured, or not judged (``reason``)
    reason: str | None = None  # why it was not judged ("not judged: host ... lost at step 32")


class HostEntry(OpenRecord):
    """One host of a job across several (torchrun's nodes): who it is, its ranks, its share.
    Hosts in network namespaces or containers share a host name: name, address and node rank
    together say which one it was."""

    name: str
    address: str  # its address towards the job's store (or GLOO_SOCKET_IFNAME's)
    node_rank: int
    ranks: list[int]
    lost: bool = False  # its ranks stopped answering: died, or hung past collective_timeout_s
    samples_per_s: float | None = None  # its ranks' sum over the measured window
    busy_pct: float | None = None  # its ranks' mean
    read_MBps: float | None = None  # what its collectors counted read (a host figure)


class CollectorsRecord(OpenRecord):
    """How the collectors ran: their rate, the ones not available (and why), their own cost."""

    rate_hz: float | None = None
    # collector (``gpu``, ``io[rank1]``) -> why it was not available
    unavailable: dict[str, str] = Field(default_factory=dict)
    sampler_cpu_s: dict[str, float] = Field(default_factory=dict)
    io_device: str | None = None  # the dataset's block device
    server_view: str | None = None  # whose view the server_* metrics are (collectors.prometheus)


class DlioBlock(OpenRecord):
    """The run's figures as DLIO (dlio_benchmark 2.0.0, MLPerf Storage's tool) defines them, one
    run playing one of DLIO's epochs; made by :func:`harness.dlio_metrics.dlio_block` (its
    docstring gives DLIO's rules, file and line). Named as DLIO names them; ``au_pct`` is DLIO's
    ``train_au_percentage`` of one epoch (the summary's ``busy_pct`` stays the measured-step
    figure)."""

    definition: str  # "dlio_benchmark 2.0.0": whose rules
    au_pct: float | None  # nominal compute of steps 2.. / (wall - step 1's load and compute)
    au_source: Literal["nominal", "measured"]  # compute times drawn by the profile, or timed
    train_throughput_samples_per_second: float | None  # all steps, the first included; all ranks
    train_io_MB_per_second: float | None  # DLIO's "MB/s": samples/s x record_length / 2^20 (MiB/s)
    record_length: float | None  # bytes per sample: the mean the pipeline asked for
    num_accelerators: int  # ranks: AU is their mean, throughput their sum
    steps: int  # per rank, warm-up steps included (DLIO has none)
    metric_exclude_start_steps: int  # left out of AU at the start of the run (DLIO: 1)


class SummaryFile(RunDocument):
    """``summary.json`` (see README "Runs"). Open records that another module owns keep their
    JSON shape: ``page_cache`` (``harness.pagecache.prepare``), ``cross_checks`` (one shape per
    check, ``harness.summary``) and ``emulation`` (``harness.train.profiles``)."""

    run_id: str
    scenario: str  # the scenario's name
    complete: bool = Field(description="whether the run finished every step it was asked for")
    reason: str | None = Field(
        default=None, description="why an incomplete run stopped; None for a complete one"
    )
    ranks: int | None = None  # the job's world size (lost ranks included)
    # each host of the job as it joined at start (None: one host), and the ranks of lost hosts
    hosts: list[HostEntry] | None = None
    missing_ranks: list[int] = Field(default_factory=list)
    page_cache: dict[str, Any] = Field(default_factory=dict)
    labels: str | None = None  # how the dataset's masks were given ("exact", "derived:...")
    metrics: dict[str, Metric]
    cross_checks: list[dict[str, Any]] = Field(default_factory=list)
    thresholds: list[ThresholdVerdict] = Field(default_factory=list)
    collectors: CollectorsRecord = Field(default_factory=CollectorsRecord)
    corrupt_files: dict[str, int] = Field(default_factory=dict)  # file -> samples skipped from it
    # the first samples skipped: {"file", "error"}
    corrupt_samples: list[dict[str, str]] = Field(default_factory=list)
    iou_per_class: list[float | None] | None = None
    warnings: list[str] = Field(default_factory=list)
    finished: str | None = None  # local time, ISO 8601
    emulation: dict[str, Any] | None = None  # emulated runs: the profile and its scaling
    # the measured window by the window rule, the fill before it, the samples never consumed
    # (``harness.summary.window_record``); None: no measured step, or written before it was kept
    window: dict[str, Any] | None = None
    dlio: DlioBlock | None = None  # DLIO's definitions; runs written before it have none
    # Per path the scenario reads (dataset, frame cache): its mount, file-system type and which
    # source counted its bytes (``harness.collect.mounts.StorageMount.record``); runs written
    # before it have none
    storage: list[dict[str, Any]] | None = None

    def value(self, name: str) -> float | None:
        """Metric ``name``'s value; None when it was not measured or is not there."""
        entry = self.metrics.get(name)
        return None if entry is None else entry.value

    def metric_table(self) -> dict[str, dict[str, Any]]:
        """The metrics as plain ``{name: {"value", "unit", "direction"}}`` mappings, the shape
        ``harness.stats`` and the report's recomputed metrics share."""
        return {name: entry.model_dump(mode="json") for name, entry in self.metrics.items()}


def read_summary(path: Path) -> SummaryFile:
    """A ``summary.json``; a one-line HarnessError naming the file and the field otherwise."""
    return read_model(path, SUMMARY, SummaryFile)


def write_summary(folder: Path, summary: SummaryFile) -> Path:
    return write_model(folder, SUMMARY, summary)
