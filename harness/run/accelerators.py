"""N emulated accelerators on this host: one rank each, started by torch.distributed's elastic
launcher (the launch API that torchrun uses), merged into one run folder here.

This process is the host's controller: it checks the scenario, writes the manifest, prepares the
page cache once, runs the host's collectors (its process tree holds every rank and every
DataLoader worker, so I/O and CPU are the host's), launches the ranks, and when they have stopped
merges the files they left (``harness.train.emulated``) into the run's tables and summary. A rank
that fails makes the launcher stop the others; their results are kept, the run is marked
incomplete, and the reason names the rank.

The launcher spawns each rank with ``accelerator_rank`` and a ``RankJob``, pickled by their
module path (``harness.run.accelerators``): both stay at this module's top level.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from harness import results
from harness.collect.sampler import Collector
from harness.errors import ExitCode, HarnessError, one_line
from harness.pipeline.accounting import FetchLog, fetch_log_path, ledger_path, remove_ledger
from harness.pipeline.preprocess import remove_slots
from harness.run.finish import (
    RunOutcome,
    assembled_table,
    keep_thumbnails,
    note_resident_at_end,
    rank_records,
    stream_collectors,
    write_manifest,
    write_results,
    write_stream_context,
)
from harness.run.prepare import (
    PreparedRun,
    RunContext,
    collectors_for,
    prepare_page_cache,
    prepare_run,
)
from harness.run.single import train_and_collect
from harness.scenario import LoadedScenario
from harness.summary import STEP_COLUMNS, RankRecords, measured_window
from harness.train.distributed import Ranks, job_store, missing_at_join
from harness.train.emulated import (
    PARTNER_FAILED,
    RANKS_FOLDER,
    RankResult,
    emulated_step,
    init_group,
    read_rank_results,
    stop_vote,
    write_pid,
    write_rank_result,
)
from harness.train.loop import LoopRecords

LAUNCHER_GRACE_S = 10  # how long the launcher lets ranks write their results after a failure
# The launcher installs handlers for these that raise its own exception and leaves them.
LAUNCHER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@dataclass(frozen=True)
class RankJob:
    """What every launched rank is given (pickled to the spawned processes)."""

    loaded: LoadedScenario
    folder: Path
    t0: float
    quiet: bool


@dataclass(frozen=True)
class Nodes:
    """The hosts of one launch across several machines (a controller on each, under an outer
    torchrun): every host starts the same number of ranks, all in one job."""

    count: int
    rank: int
    endpoint: str  # host:port of this launch's own static rendezvous (host 0 serves it)
    # each node rank's host as the job knows it, e.g. "client2 (10.0.0.2, node rank 1)"
    labels: tuple[str, ...] = ()

    def label(self, rank: int) -> str:
        return self.labels[rank] if rank < len(self.labels) else f"node rank {rank}"


def run_accelerators(
    prepared: PreparedRun,
    accelerators: int,
    *,
    results_root: Path,
    command: list[str],
    repeat: tuple[int, int] | None,
    quiet: bool,
    nodes: Nodes | None = None,
) -> RunOutcome:
    """Launch ``accelerators`` emulated ranks on this host (with ``nodes``, as this host's share
    of a job across several) and merge them into one run folder for this host."""
    scenario = prepared.scenario
    folder = results_root / results.new_run_id(scenario.name)
    write_manifest(prepared, folder, accelerators, command, repeat)
    context = _host_context(prepared, folder, quiet)
    write_stream_context(context, prepared)
    ledger = ledger_path(folder.name)  # the host's: its ranks and their workers count a page once
    prepared.source.share_ledger(ledger, create=True)
    join_s = scenario.training.collective_timeout_s
    config = _launch_config(folder, accelerators, nodes, join_s)
    _quiet_launcher_logs()
    t0 = time.monotonic()
    collectors = collectors_for(scenario, t0, context.ranks, folder.name)
    stream_collectors(collectors, folder, 0)  # the host's, merged as the first rank's
    # Ours come back afterwards, and nothing interrupts the merge of what the ranks measured.
    saved = {sig: signal.getsignal(sig) for sig in LAUNCHER_SIGNALS}
    for collector in collectors:
        collector.start()
    try:
        launch_failure = _unjoined(nodes, join_s)
        if launch_failure is None:
            job = RankJob(prepared.loaded, folder, t0, quiet)
            launch_failure, exit_code = _launch(config, job)
        else:
            exit_code = ExitCode.FAILED
    finally:
        for sig in LAUNCHER_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        for collector in collectors:
            collector.stop()
        remove_ledger(ledger)
        if prepared.preprocess is not None:
            remove_slots(folder.name, prepared.preprocess.servers(accelerators * _hosts(nodes)))
    if nodes is None:  # every rank on this host: the page cache saw all their reads
        note_resident_at_end(prepared, context)
    first = 0 if nodes is None else nodes.rank * accelerators  # this host's global ranks
    ranks = range(first, first + accelerators)
    found = read_rank_results(folder, ranks)
    parts = _merge_host(folder, found, collectors)
    complete, reason, exit_code = _verdict(found, ranks, launch_failure, exit_code)
    summary = None
    try:
        summary = write_results(context, parts, None, complete, reason, prepared)
        shutil.rmtree(folder / RANKS_FOLDER, ignore_errors=True)  # merged into the run's tables
        if complete:
            keep_thumbnails(context, prepared, None)
    except HarnessError as exc:  # the disk is full or gone: what is written stays complete
        complete, reason, exit_code = False, str(exc), ExitCode.FAILED
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return RunOutcome(folder, complete, reason, exit_code, summary)


def _hosts(nodes: Nodes | None) -> int:
    return 1 if nodes is None else nodes.count


def _host_context(prepared: PreparedRun, folder: Path, quiet: bool) -> RunContext:
    """The controller's context: the host as one rank, its page cache prepared once for all."""
    return RunContext(
        prepared.scenario,
        folder,
        Ranks(),
        prepared.device,
        prepared.dataset_manifest,
        prepared.cache_manifest,
        quiet,
        prepare_page_cache(prepared, act=True),
    )


def _unjoined(nodes: Nodes | None, timeout_s: float) -> str | None:
    """With ``nodes``, check that every host's controller came to this launch within
    ``timeout_s`` (in the store of the job that joined them): the one line naming those that did
    not, else None."""
    if nodes is None or not torch.distributed.is_initialized():
        return None
    store = job_store()
    missing = missing_at_join(store, nodes.endpoint, nodes.rank, nodes.count, timeout_s)
    if not missing:
        return None
    who = ", ".join(f"host {nodes.label(rank)}" for rank in missing)
    return f"{who} did not join the launch at {nodes.endpoint} within {timeout_s:g} s"


def _launch_config(
    folder: Path, accelerators: int, nodes: Nodes | None, join_s: float
) -> LaunchConfig:
    """One launch of this host's ranks: a rendezvous of its own on this host alone, or the
    static one of every host's controller with ``nodes`` (waiting ``join_s`` for them)."""
    rendezvous: dict[str, Any] = (
        {"rdzv_backend": "c10d", "rdzv_endpoint": "127.0.0.1:0"}
        if nodes is None
        else {
            "rdzv_backend": "static",
            "rdzv_endpoint": nodes.endpoint,
            "rdzv_configs": {"rank": nodes.rank, "timeout": max(1, round(join_s))},
        }
    )
    return LaunchConfig(
        min_nodes=1 if nodes is None else nodes.count,
        max_nodes=1 if nodes is None else nodes.count,
        nproc_per_node=accelerators,
        run_id=f"{folder.name}-{uuid.uuid4().hex[:8]}" if nodes is None else nodes.endpoint,
        **rendezvous,
        max_restarts=0,
        monitor_interval=0.2,
        # A fork server that has imported this module (torch included) once starts each rank in
        # ~50 ms; spawned, every rank imported torch again, ~1.2 s a rank on 2 cores, paid by
        # every probe of a capacity search (the server lives as long as the harness process).
        start_method="forkserver",
        shutdown_timeout=LAUNCHER_GRACE_S,
        # its per-launch log folders go with the ranks' files (removed after the merge)
        logs_specs=DefaultLogsSpecs(log_dir=str(folder / RANKS_FOLDER / "logs")),
    )


def _quiet_launcher_logs() -> None:
    """The launcher logs each failure as a traceback; the run reports it in one line instead."""
    for name in (
        "torch.distributed.elastic",
        "torch.distributed.launcher",
        "torch.multiprocessing",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _launch(config: LaunchConfig, job: RankJob) -> tuple[str | None, int]:
    """Run the ranks until they have all stopped: why the launch failed (None: it did not) and
    its exit code."""
    multiprocessing.set_forkserver_preload([__name__])  # read when the server starts (once)
    try:
        elastic_launch(config, accelerator_rank)(job)
    except ChildFailedError as exc:
        return _describe_failures(exc), ExitCode.FAILED
    except SignalException as exc:
        return f"interrupted by {exc.sigval.name}", ExitCode.for_signal(exc.sigval.name)
    except KeyboardInterrupt:
        return "interrupted by SIGINT", ExitCode.INTERRUPTED
    except Exception as exc:  # the rendezvous or the launcher itself: one line, results kept
        return f"launch failed: {type(exc).__name__}: {one_line(exc, 300)}", ExitCode.FAILED
    return None, ExitCode.OK


def _verdict(
    found: dict[int, RankResult], ranks: range, launch_failure: str | None, exit_code: int
) -> tuple[bool, str | None, int]:
    """Whether every rank of this host finished, why not, and the run's exit code."""
    complete = launch_failure is None and len(found) == len(ranks)
    complete = complete and all(r.complete for r in found.values())
    reason = None if complete else _reason(found, ranks, launch_failure)
    if not complete and exit_code in (ExitCode.OK, ExitCode.FAILED):  # the ranks' own verdict
        worst = max((r.exit_code for r in found.values()), default=ExitCode.FAILED)
        exit_code = worst or ExitCode.FAILED  # e.g. BAD_INPUT: a rank refused its input
    return complete, reason, exit_code


def accelerator_rank(job: RankJob) -> None:
    """One emulated accelerator (a process the launcher spawned): its share of the samples,
    emulated steps, a stop vote after each; its records go to the run folder however it ends."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    training = job.loaded.scenario.training
    write_pid(job.folder, rank)
    torch.set_num_threads(1)  # no model: the cores are the pipelines'
    # the ranks share the host's run folder
    records = LoopRecords.streamed(job.folder, rank, job.loaded.scenario.pipeline.batch_size)
    result = RankResult(False, "did not start", ExitCode.FAILED, None)
    try:
        init_group(training.collective_timeout_s)
        prepared = prepare_run(job.loaded, local_rank)
        assert prepared.compute_times is not None
        ranks = Ranks(rank, world, local_rank)
        prepared.source.share_ledger(ledger_path(job.folder.name), create=False)
        context = RunContext(
            job.loaded.scenario,
            job.folder,
            ranks,
            prepared.device,
            prepared.dataset_manifest,
            prepared.cache_manifest,
            job.quiet,
            None,
        )
        times = prepared.compute_times.sampler(training.seed * 7919 + rank)
        synchronise = (
            stop_vote(training.collective_timeout_s, job.folder)
            if training.sync == "barrier" and world > 1  # nothing to wait for alone
            else None
        )
        fetch_log = FetchLog.create(fetch_log_path(job.folder.name, rank))
        batches = prepared.backend.batches(prepared.batch_request(ranks, job.folder, fetch_log))
        complete, reason, code = train_and_collect(
            context,
            emulated_step(times, prepared.device),
            batches,
            job.t0,
            records,
            [],
            synchronise,
            fetch_log,
        )
        result = RankResult(complete, reason, code, None)
    except Exception as exc:  # refused or failed before the loop: one line, in the result
        message = f"rank {rank}: {type(exc).__name__}: {one_line(exc, 300)}"
        result = RankResult(False, message, ExitCode.BAD_INPUT, None)
    finally:
        # The launcher stops the others with SIGTERM when one fails: let this rank save first
        # (it still ends it with SIGKILL after its grace period).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        result.records = rank_records(rank, records, [])
        write_rank_result(job.folder, rank, result)
    if result.exit_code:
        raise SystemExit(result.exit_code)


def _merge_host(
    folder: Path, found: dict[int, RankResult], collectors: list[Collector]
) -> list[RankRecords]:
    """The ranks' records in rank order; the host's collectors (their series, and their metrics
    over the ranks' measured window) are given to the first of them."""
    parts = [found[rank].records for rank in sorted(found)]
    window = measured_window(assembled_table(folder, "steps", parts, STEP_COLUMNS))
    host = rank_records(0, LoopRecords(), collectors, window)
    if not parts:
        return [host]
    first = parts[0]
    first.series, first.collector_metrics = host.series, host.collector_metrics
    first.unavailable, first.sampler_cpu_s = host.unavailable, host.sampler_cpu_s
    first.io_read_bytes, first.io_device = host.io_read_bytes, host.io_device
    first.io_mount, first.io_missed_bytes = host.io_mount, host.io_missed_bytes
    first.io_link_rx_bytes = host.io_link_rx_bytes
    for part in parts[1:]:  # the host's collector counted their reads in the first one's
        part.io_read_bytes = 0 if host.io_read_bytes is not None else None
    return parts


def _reason(found: dict[int, RankResult], ranks: range, launch_failure: str | None) -> str:
    """The first rank's own reason that is not the launcher stopping it, else the launcher's."""
    missing = [rank for rank in ranks if rank not in found]
    reasons = [r.reason for _, r in sorted(found.items()) if r.reason]
    # A rank's own failure first; then what a rank saw of a partner; not the launcher's SIGTERM.
    own = [r for r in reasons if not r.startswith(("interrupted by SIGTERM", PARTNER_FAILED))]
    own += [r for r in reasons if r.startswith(PARTNER_FAILED)]
    parts = own[:1] or ([launch_failure] if launch_failure else [])
    if missing:
        parts.append(f"no records from rank(s) {', '.join(map(str, missing))}")
    return "; ".join(parts) or "an accelerator rank failed"


def _describe_failures(error: ChildFailedError) -> str:
    """The launcher's view: which rank ended how (a signal that the launcher did not send
    first, since it stops the others with SIGTERM)."""
    lines = []
    for rank, failure in sorted(error.failures.items()):
        if failure.exitcode < 0:
            name = signal.Signals(-failure.exitcode).name
            lines.append(f"rank {rank} (pid {failure.pid}) was killed by {name}")
        else:
            lines.append(f"rank {rank} (pid {failure.pid}) exited with {failure.exitcode}")
    killed = [line for line in lines if "killed" in line and "SIGTERM" not in line]
    return "; ".join(killed or lines)
