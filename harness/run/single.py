"""The single-process driver: one process, one rank (or one of torchrun's ranks), from the run
folder to its results.

Order matters: the manifest is written before the first step; whatever happens after that
(Ctrl-C, SIGTERM, a dead worker, a corrupt file under ``fail``), the finished steps and collected
series are written, marked ``"complete": false`` with the reason, and no worker is left behind.
They are written as soon as training ends, before the held-out evaluation, which Ctrl-C and
SIGTERM interrupt too and whose failure is the run's reason.
``train_and_collect`` is the timed loop with its collectors and signal handling, which every
emulated accelerator (``harness.run.accelerators``) runs too.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import torch

from harness import results
from harness.collect.sampler import Collector
from harness.errors import ExitCode, HarnessError
from harness.files import DiskError
from harness.pipeline.accounting import FetchLog, fetch_log_path, ledger_path, remove_ledger
from harness.pipeline.batch import Batch, Sample, worker_error
from harness.pipeline.preprocess import remove_slots
from harness.run.finish import (
    RunOutcome,
    gather_records,
    keep_thumbnails,
    note_resident_at_end,
    stream_collectors,
    write_manifest,
    write_run_summary,
    write_stream_context,
    write_tables,
)
from harness.run.prepare import (
    PreparedRun,
    RunContext,
    collectors_for,
    host_key,
    prepare_page_cache,
)
from harness.summary import JobHosts, RankRecords, Summary
from harness.train import distributed
from harness.train.emulated import emulated_step, stop_vote, write_pid
from harness.train.loop import (
    Evaluation,
    LoopRecords,
    PendingFetches,
    RunFailed,
    StepFunction,
    progress_printer,
    real_step,
    train,
)
from harness.train.model import build_model, evaluate_model, page_in, set_cpu_threads

Synchronise = Callable[[bool], bool]  # the per-step stop vote of emulated ranks


class Interrupted(BaseException):
    """SIGTERM, or SIGINT (Ctrl-C): stop, keep what was collected."""


def run_single(
    prepared: PreparedRun,
    *,
    results_root: Path,
    command: list[str],
    repeat: tuple[int, int] | None,
    quiet: bool,
) -> RunOutcome:
    """Run the prepared scenario's training loop in this process with its collectors and write
    ``results/<run-id>/`` (on rank 0)."""
    scenario = prepared.scenario
    context, ledger = _start(prepared, results_root, command, repeat, quiet)
    ranks = context.ranks
    torch.manual_seed(scenario.training.seed)
    model, step_function, synchronise = _training_step(context, prepared)
    fetch_log = FetchLog.create(fetch_log_path(context.folder.name, ranks.rank))
    request = prepared.batch_request(
        ranks, context.folder, fetch_log, host_key(context.folder.name)
    )
    batches = prepared.backend.batches(request)
    # Streamed where this rank sees the run folder (rank 0; others on its host or a shared
    # file system); a rank on another host keeps its rows and sends them at the end.
    streamed = context.folder.is_dir()
    records = (
        LoopRecords.streamed(context.folder, ranks.rank, context.scenario.pipeline.batch_size)
        if streamed
        else LoopRecords()
    )
    t0 = time.monotonic()
    collectors = collectors_for(scenario, t0, ranks, host_key(context.folder.name))
    if streamed:
        stream_collectors(collectors, context.folder, ranks.rank)
    complete, reason, exit_code = train_and_collect(
        context, step_function, batches, t0, records, collectors, synchronise, fetch_log
    )
    # Rows still held go to their segments before this rank says it ended: rank 0 reads a
    # survivor's segments once it has said so.
    flush_failed: HarnessError | None = None
    try:
        records.close()
    except HarnessError as exc:  # the disk is full: a failed run, said below
        flush_failed = exc
    # rank 0 tells a lost host from a slow one by this
    distributed.note_ended(ranks, context.folder.name)
    if ranks.is_main and ranks.world == int(os.environ.get("LOCAL_WORLD_SIZE", "1")):
        note_resident_at_end(prepared, context)  # every rank on this host
    try:
        if flush_failed is not None:
            raise flush_failed
        parts, complete, reason = gather_records(context, records, collectors, complete, reason)
        if not complete and exit_code == ExitCode.OK:  # a partner rank was gone at the gather
            exit_code = ExitCode.FAILED
        saved = _save_and_evaluate(context, prepared, parts, model, complete, reason)
        complete, reason = saved.complete, saved.reason
        exit_code = saved.exit_code if saved.exit_code is not None else exit_code
        summary = saved.summary
        if summary is not None and not summary.complete:  # e.g. a host lost: the summary says
            complete, reason = False, summary.reason
            exit_code = exit_code or ExitCode.FAILED
    except HarnessError as exc:  # the disk is full or gone: what is written stays complete
        complete, reason, exit_code, summary = False, str(exc), ExitCode.FAILED, None
    distributed.shutdown(ranks)
    if ranks.local_rank == 0:
        remove_ledger(ledger)  # the processes that have it open keep their mappings
        if prepared.preprocess is not None:  # the host's semaphores, likewise
            remove_slots(host_key(context.folder.name), prepared.preprocess.servers(ranks.world))
    folder = context.folder if ranks.is_main else None
    return RunOutcome(folder, complete, reason, exit_code, summary)


EVALUATION_PENDING = "the held-out evaluation did not finish"


@dataclass
class _Saved:
    complete: bool
    reason: str | None
    exit_code: int | None  # None: the training loop's
    summary: Summary | None


def _save_and_evaluate(
    context: RunContext,
    prepared: PreparedRun,
    parts: list[RankRecords] | None,
    model: torch.nn.Module | None,
    complete: bool,
    reason: str | None,
) -> _Saved:
    """Write what training measured at once (tables, and a summary marked incomplete while the
    held-out evaluation runs), then evaluate; the summary is written again with the
    evaluation's figures, or with why it failed or was interrupted. The thumbnails come last,
    for a complete run. ``parts``: every rank's records on rank 0, None on the others."""
    scenario = context.scenario
    evaluating = complete and model is not None and scenario.training.eval_samples > 0
    summary = None
    if parts is not None:
        write_tables(context.folder, parts)
        pending = (False, EVALUATION_PENDING) if evaluating else (complete, reason)
        summary = write_run_summary(context, parts, None, *pending, prepared)
    if not evaluating:
        if context.ranks.is_main and complete:
            keep_thumbnails(context, prepared, None)
        return _Saved(complete, reason, None, summary)
    assert model is not None
    held_out: list[Sample] = []  # the first held-out samples, as the evaluation read them
    signals = _HeldSignals()
    try:
        evaluation, failure = _held_out_evaluation(context, prepared, model, held_out, signals)
        complete, reason = failure is None, None if failure is None else failure[0]
        if parts is not None:
            summary = write_run_summary(context, parts, evaluation, complete, reason, prepared)
    finally:
        signals.restore()
    if context.ranks.is_main and complete:
        keep_thumbnails(context, prepared, model if evaluation else None, held_out)
    return _Saved(complete, reason, None if failure is None else failure[1], summary)


def _held_out_evaluation(
    context: RunContext,
    prepared: PreparedRun,
    model: torch.nn.Module,
    held_out: list[Sample],
    signals: _HeldSignals,
) -> tuple[Evaluation | None, tuple[str, ExitCode] | None]:
    """The trained model's held-out evaluation, or why it did not finish (reason, exit code):
    a file it cannot read, SIGINT or SIGTERM (``signals`` interrupt it at once, as in the
    loop, then are ignored until the caller has written the summary)."""
    try:
        signals.arm()
        classes = int(prepared.dataset_manifest["classes"])
        evaluation = evaluate_model(
            model, context.scenario, prepared.source, prepared.plan, classes, context.device,
            held_out,
        )  # fmt: skip
        return evaluation, None
    except (Interrupted, Exception) as exc:
        reason, code = _ending(exc)
        if isinstance(exc, Interrupted):
            return None, (f"{reason} during the held-out evaluation", code)
        return None, (f"held-out evaluation failed: {reason.removeprefix('run failed: ')}", code)
    finally:
        signals.ignore()


def _start(
    prepared: PreparedRun,
    results_root: Path,
    command: list[str],
    repeat: tuple[int, int] | None,
    quiet: bool,
) -> tuple[RunContext, Path]:
    """Join the ranks, create the run folder with its manifest, share the page ledger and set
    the page cache: the run's context, and its ledger's path."""
    scenario, device = prepared.scenario, prepared.device
    emulated = prepared.compute_times is not None
    ranks = distributed.init_ranks(
        device.is_cuda and not emulated, scenario.training.collective_timeout_s
    )
    folder = results_root / distributed.broadcast(results.new_run_id(scenario.name), ranks)
    joined = distributed.join_hosts(ranks)  # which hosts are in the job, named in its summary
    if ranks.is_main:
        write_manifest(prepared, folder, ranks.world, command, repeat)
    # one per host: its ranks and workers count a page once
    ledger = ledger_path(host_key(folder.name))
    if ranks.local_rank == 0:
        prepared.source.share_ledger(ledger, create=True)
    context = RunContext(
        scenario,
        folder,
        ranks,
        device,
        prepared.dataset_manifest,
        prepared.cache_manifest,
        quiet,
        prepare_page_cache(prepared, act=ranks.local_rank == 0),
        JobHosts(joined) if ranks.distributed else None,
    )
    if ranks.is_main:
        write_stream_context(context, prepared)
    distributed.barrier(ranks)
    if ranks.local_rank != 0:
        prepared.source.share_ledger(ledger, create=False)
    return context, ledger


def _training_step(
    context: RunContext, prepared: PreparedRun
) -> tuple[torch.nn.Module | None, StepFunction, Synchronise | None]:
    """The model (None when emulated), the step the loop times, and the emulated ranks' stop
    vote where they wait for each other."""
    if prepared.compute_times is None:
        model, step_function = _real_training(context)
        return model, step_function, None
    scenario, ranks = context.scenario, context.ranks
    torch.set_num_threads(1)  # no model: the cores are the pipeline's
    times = prepared.compute_times.sampler(scenario.training.seed * 7919 + ranks.rank)
    synchronise = None
    if ranks.distributed and scenario.training.sync == "barrier":
        write_pid(context.folder, ranks.rank)  # so that a partner that stops answering is named
        synchronise = stop_vote(scenario.training.collective_timeout_s, context.folder)
    return None, emulated_step(times, context.device), synchronise


def _real_training(context: RunContext) -> tuple[torch.nn.Module, StepFunction]:
    """The U-Net, paged in before the collectors start, and its training step."""
    scenario, device = context.scenario, context.device
    set_cpu_threads(scenario, device)
    classes = int(context.dataset_manifest["classes"])
    model, optimizer = build_model(scenario, classes, device, context.ranks)
    page_in(model, scenario, device)
    return model, real_step(model, optimizer, device)


def train_and_collect(
    context: RunContext,
    step_function: StepFunction,
    batches: Iterable[Batch],
    t0: float,
    records: LoopRecords,
    collectors: list[Collector],
    synchronise: Synchronise | None = None,
    fetch_log: FetchLog | None = None,
) -> tuple[bool, str | None, int]:
    """The timed loop with the collectors around it; Ctrl-C, SIGTERM and failures end it with
    what was measured kept, as (complete, reason, exit code). Once the pipeline has stopped,
    the samples its ``fetch_log`` holds that no step took are noted in ``records``."""
    scenario, ranks, quiet = context.scenario, context.ranks, context.quiet
    steps = scenario.training.steps
    signals = _HeldSignals()
    iterator = None
    complete, reason, exit_code = False, None, ExitCode.FAILED
    try:
        for collector in collectors:
            collector.start()
        if fetch_log is not None:
            records.fetches = PendingFetches(fetch_log, t0)
        iterator = iter(batches)
        signals.arm()
        train(
            step_function,
            iterator,
            context.device,
            t0=t0,
            warmup_steps=scenario.training.warmup_steps,
            steps=steps,
            duration_s=scenario.training.duration_s,
            records=records,
            synchronise=synchronise,
            progress=None if quiet or not ranks.is_main else progress_printer(steps),
        )
        complete, exit_code = True, ExitCode.OK
    except (Interrupted, Exception) as exc:
        reason, exit_code = _ending(exc)
    finally:
        # Ignore further signals while shutting down, so that a second Ctrl-C cannot lose data.
        signals.ignore()
        for collector in collectors:
            collector.stop()
        _stop_batches(iterator)
        if records.fetches is not None:
            records.unconsumed = records.fetches.unconsumed()
        if fetch_log is not None:
            fetch_log.remove()
        signals.restore()
    return complete, reason, exit_code


class _HeldSignals:
    """SIGINT and SIGTERM raise ``Interrupted`` once armed. A signal that lands while the
    DataLoader starts its workers is held until they are up: raising in the middle of that would
    leave a half-built iterator that cannot shut down."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._armed = False
        self._previous = {
            s: signal.signal(s, self._interrupt) for s in (signal.SIGINT, signal.SIGTERM)
        }

    def _interrupt(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self._armed:
            self._pending.append(name)
            return
        raise Interrupted(name)

    def arm(self) -> None:
        """From now on a signal interrupts at once; one held meanwhile interrupts now."""
        self._armed = True
        if self._pending:
            raise Interrupted(self._pending[0])

    def ignore(self) -> None:
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ending(exc: BaseException) -> tuple[str, ExitCode]:
    """Why the loop ended early, and the exit code that says so."""
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc}", ExitCode.for_signal(str(exc))
    if isinstance(exc, RunFailed | DiskError):  # a disk that fills while measuring: a failure
        return str(exc), ExitCode.FAILED
    if isinstance(exc, HarnessError):
        return str(exc), ExitCode.BAD_INPUT
    if isinstance(exc, RuntimeError):
        # PyTorch's SIGCHLD handler raises this wherever the loop is when a worker dies; a
        # collective raises it when another rank died.
        text = worker_error(exc)
        what = "the data pipeline failed" if "DataLoader worker" in str(exc) else "run failed"
        return f"{what}: {text}", ExitCode.FAILED
    # a backend library's own error: one line, results kept
    return f"run failed: {worker_error(exc)}", ExitCode.FAILED


def _stop_batches(iterator: Iterator[Batch] | None) -> None:
    """Stop the backend's workers now, not at garbage collection."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:  # a DataLoader's iterator
        shutdown()
    elif callable(getattr(iterator, "close", None)):  # generators, background threads
        iterator.close()  # type: ignore[union-attr]
