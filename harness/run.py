"""One run of a scenario, from checks to results folder.

Order matters: everything that can refuse the run (backend, device, dataset, cache) is checked
before any work; the manifest is written before the first step; whatever happens after that
(Ctrl-C, SIGTERM, a dead worker, a corrupt file under ``fail``), the finished steps and collected
series are written, marked ``"complete": false`` with the reason, and no worker is left behind.
What the numbers mean is decided in ``harness.summary`` (pure); this module only gathers them.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness import results
from harness.collect.sampler import Collector
from harness.data.cache import read_cache_manifest
from harness.data.index import dataset_manifest as dataset_index
from harness.errors import ExitCode, HarnessError, one_line
from harness.pipeline import BatchRequest, require_backend
from harness.pipeline.accounting import ledger_path
from harness.pipeline.batch import Batch, worker_error
from harness.scenario import LoadedScenario, Scenario
from harness.summary import RankRecords, Summary, build_summary, sample_table, step_table
from harness.train.distributed import Ranks
from harness.train.loop import Device, LoopRecords, StepFunction
from harness.train.profiles import ComputeTimes


class Interrupted(BaseException):
    """SIGTERM, or SIGINT (Ctrl-C): stop, keep what was collected."""


@dataclass
class RunContext:
    """What every stage of one run needs to know about it, passed explicitly."""

    scenario: Scenario
    folder: Path
    ranks: Ranks
    device: Device
    dataset_manifest: dict[str, Any]
    cache_manifest: dict[str, Any] | None
    quiet: bool
    page_cache: dict[str, Any]


@dataclass
class RunOutcome:
    folder: Path | None  # None on ranks other than 0
    complete: bool
    reason: str | None
    exit_code: int  # an ExitCode: OK, FAILED, BAD_INPUT, INTERRUPTED or TERMINATED
    summary: Summary | None


@dataclass
class PreparedRun:
    """A scenario checked against this machine and its data, before any work."""

    loaded: LoadedScenario
    backend: ModuleType
    device: Device
    dataset_manifest: dict[str, Any]
    cache_manifest: dict[str, Any] | None
    source: Any  # harness.pipeline.sources.Source
    plan: Any  # harness.pipeline.sources.SamplePlan
    compute_times: ComputeTimes | None  # emulated runs: where step times come from

    @property
    def scenario(self) -> Scenario:
        return self.loaded.scenario

    def batch_request(self, ranks: Ranks, folder: Path) -> BatchRequest:
        pipeline = self.scenario.pipeline
        return BatchRequest(
            source=self.source,
            plan=self.plan,
            batch_size=pipeline.batch_size,
            crop=pipeline.crop,
            workers=pipeline.workers,
            prefetch_factor=pipeline.prefetch_factor,
            read_threads=pipeline.read_threads,
            on_corrupt=pipeline.on_corrupt,
            seed=self.scenario.training.seed,
            rank=ranks.rank,
            world=ranks.world,
            steps=self.scenario.training.steps,
            device=self.device.torch_device,
            work_dir=folder,
        )


def prepare_run(loaded: LoadedScenario, local_rank: int = 0) -> PreparedRun:
    """Everything that can refuse the run, checked before any work: backend, device, dataset,
    frame cache, the backend's limits, the emulation profile."""
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import build_source
    from harness.train.loop import resolve_device

    scenario = loaded.scenario
    backend = require_backend(scenario.pipeline.backend)
    emulated = scenario.training.compute == "emulated"
    if emulated and scenario.training.device != "cpu":
        # More emulated accelerators than GPUs share them for their host-to-device copies.
        local_rank = _shared_gpu(local_rank)
    device = resolve_device(scenario.training.device, scenario.training.precision, local_rank)
    dataset_manifest = dataset_index(scenario.dataset, str(loaded.file))
    cache_manifest = read_cache_manifest(scenario) if scenario.pipeline.mode == "cached" else None
    source = build_source(scenario, dataset_manifest, cache_manifest)
    backend.check_scenario(source, device.is_cuda)
    plan = SamplePlan(
        source.files,
        scenario.pipeline.crop,
        scenario.training.seed,
        scenario.pipeline.shuffle,
        scenario.pipeline.sequence_length,
    )
    times = None
    if emulated:
        from harness.train.profiles import compute_times

        times = compute_times(scenario, int(dataset_manifest["classes"]))
    return PreparedRun(
        loaded, backend, device, dataset_manifest, cache_manifest, source, plan, times
    )


def _shared_gpu(local_rank: int) -> int:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return local_rank % count if count else local_rank


def local_accelerators(scenario: Scenario) -> int:
    """Emulated accelerators this process launches: 1 under torchrun (torchrun launched them:
    ``accelerators`` must then match --nproc-per-node) and for real runs."""
    training = scenario.training
    if training.compute != "emulated":
        return 1
    per_node = os.environ.get("LOCAL_WORLD_SIZE")
    if per_node is not None:
        if training.accelerators not in (None, int(per_node)):
            raise HarnessError(
                f"training.accelerators {training.accelerators}: under torchrun each process is "
                f"one accelerator and --nproc-per-node is {per_node}; leave accelerators unset "
                "or make them equal"
            )
        return 1
    return training.accelerators or 1


def run_scenario(
    loaded: LoadedScenario,
    *,
    results_root: Path,
    command: list[str],
    repeat: tuple[int, int] | None = None,
    quiet: bool = False,
    launch: bool = False,
) -> RunOutcome:
    """Run the scenario's training loop with its collectors and write ``results/<run-id>/``.

    Emulated accelerators are launched as processes when there are several (or with ``launch``,
    so that one accelerator runs exactly as each of several would: capacity probes)."""
    import torch

    from harness.train import distributed

    scenario = loaded.scenario
    launched = local_accelerators(scenario)
    prepared = prepare_run(loaded, int(os.environ.get("LOCAL_RANK", "0")))
    under_torchrun = "LOCAL_WORLD_SIZE" in os.environ
    if prepared.compute_times is not None and (launched > 1 or (launch and not under_torchrun)):
        from harness.accelerators import run_accelerators

        return run_accelerators(
            prepared, launched, results_root=results_root, command=command, repeat=repeat,
            quiet=quiet,
        )  # fmt: skip
    device, emulated = prepared.device, prepared.compute_times is not None
    ranks = distributed.init_ranks(
        device.is_cuda and not emulated, scenario.training.collective_timeout_s
    )
    folder = results_root / distributed.broadcast(results.new_run_id(scenario.name), ranks)
    if ranks.is_main:
        write_manifest(prepared, folder, ranks.world, command, repeat)
    ledger = ledger_path(folder.name)  # one per host: its ranks and workers count a page once
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
    )
    distributed.barrier(ranks)
    if ranks.local_rank != 0:
        prepared.source.share_ledger(ledger, create=False)

    torch.manual_seed(scenario.training.seed)
    model = None
    synchronise = None
    if prepared.compute_times is None:
        model, step_function = _real_training(context)
    else:
        from harness.train.emulated import emulated_step, stop_vote, write_pid

        torch.set_num_threads(1)  # no model: the cores are the pipeline's
        times = prepared.compute_times.sampler(scenario.training.seed * 7919 + ranks.rank)
        step_function = emulated_step(times, device)
        if ranks.distributed and scenario.training.sync == "barrier":
            write_pid(folder, ranks.rank)  # so that a partner that stops answering is named
            synchronise = stop_vote(scenario.training.collective_timeout_s, folder)
    batches = prepared.backend.batches(prepared.batch_request(ranks, folder))
    records = LoopRecords()
    t0 = time.monotonic()
    collectors = collectors_for(scenario, Path(scenario.dataset.path), t0, ranks)
    complete, reason, exit_code = train_and_collect(
        context, step_function, batches, t0, records, collectors, synchronise
    )
    if ranks.is_main and ranks.world == int(os.environ.get("LOCAL_WORLD_SIZE", "1")):
        note_resident_at_end(prepared, context.page_cache)  # every rank on this host
    evaluation = None
    held_out: list[Any] = []  # the first held-out samples, as the evaluation read them
    if complete and model is not None:
        from harness.train.model import evaluate_model

        classes = int(prepared.dataset_manifest["classes"])
        evaluation = evaluate_model(
            model, scenario, prepared.source, prepared.plan, classes, device, held_out
        )
    summary = _finish(context, records, collectors, evaluation, complete, reason, prepared)
    distributed.shutdown(ranks)
    if ranks.local_rank == 0:
        ledger.unlink(missing_ok=True)  # the processes that have it open keep their mapping
    if ranks.is_main and complete:
        keep_thumbnails(context, prepared, model if evaluation else None, held_out)
    return RunOutcome(folder if ranks.is_main else None, complete, reason, exit_code, summary)


def write_manifest(
    prepared: PreparedRun,
    folder: Path,
    ranks: int,
    command: list[str],
    repeat: tuple[int, int] | None,
) -> None:
    """Create the run folder and write its manifest (before the first step)."""
    from harness.train.model import cpu_threads_for

    scenario, device = prepared.scenario, prepared.device
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise HarnessError(f"cannot create the run folder {folder}: {exc.strerror}") from None
    times = prepared.compute_times
    results.write_document(
        folder,
        results.MANIFEST,
        {
            "run_id": folder.name,
            "scenario": scenario.model_dump(mode="json"),
            "scenario_file": str(prepared.loaded.file),
            "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ranks": ranks,
            "device": str(device.torch_device),
            "precision": device.precision,
            "cpu_threads": cpu_threads_for(scenario) if times is None else 1,
            "repeat": None if repeat is None else {"index": repeat[0], "of": repeat[1]},
            "emulation": None if times is None else times.document(),
            **_environment(Path(scenario.dataset.path)),
        },
    )


def prepare_page_cache(prepared: PreparedRun, *, act: bool) -> dict[str, Any]:
    from harness import pagecache

    scenario = prepared.scenario
    return pagecache.prepare(
        scenario.pipeline.page_cache,
        prepared.source.data_files(),
        Path(scenario.dataset.path),
        act=act,
    )


def note_resident_at_end(prepared: PreparedRun, page_cache: dict[str, Any]) -> None:
    """The dataset's bytes in the page cache once the loop has ended (before evaluation reads
    more), so that the summary can tell the dataset's pages the run brought in from the other
    files its processes read."""
    from harness import pagecache

    page_cache["resident_page_bytes_at_end"] = pagecache.resident_page_bytes(
        prepared.source.data_files()
    )


def _real_training(context: RunContext) -> tuple[Any, StepFunction]:
    """The U-Net, paged in before the collectors start, and its training step."""
    from harness.train.loop import real_step
    from harness.train.model import build_model, page_in, set_cpu_threads

    scenario, device = context.scenario, context.device
    set_cpu_threads(scenario, device)
    classes = int(context.dataset_manifest["classes"])
    model, optimizer = build_model(scenario, classes, device, context.ranks)
    page_in(model, scenario, device)
    return model, real_step(model, optimizer, device)


def _environment(dataset_dir: Path) -> dict[str, Any]:
    from harness.env import environment

    return environment(dataset_dir)


def collectors_for(
    scenario: Scenario, dataset_dir: Path, t0: float, ranks: Ranks
) -> list[Collector]:
    from harness.collect import PER_HOST, make_collectors

    names = scenario.collectors.enabled
    if ranks.local_rank != 0:  # one process per machine samples what the whole machine shares
        names = [n for n in names if n not in PER_HOST]
    return make_collectors(
        names,
        rate_hz=scenario.collectors.rate_hz,
        root_pid=os.getpid(),
        dataset_path=dataset_dir,
        t0=t0,
    )


def train_and_collect(
    context: RunContext,
    step_function: StepFunction,
    batches: Iterable[Batch],
    t0: float,
    records: LoopRecords,
    collectors: list[Collector],
    synchronise: Callable[[bool], bool] | None = None,
) -> tuple[bool, str | None, int]:
    """The timed loop with the collectors around it; Ctrl-C, SIGTERM and failures end it with
    what was measured kept, as (complete, reason, exit code)."""
    from harness.train.loop import RunFailed, progress_printer, train

    scenario, ranks, quiet = context.scenario, context.ranks, context.quiet
    steps = scenario.training.steps

    # A signal that lands while the DataLoader starts its workers is held until they are up:
    # raising in the middle of that would leave a half-built iterator that cannot shut down.
    pending: list[str] = []
    armed = [False]

    def interrupt(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if not armed[0]:
            pending.append(name)
            return
        raise Interrupted(name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    iterator = None
    complete, reason, exit_code = False, None, ExitCode.FAILED
    try:
        for collector in collectors:
            collector.start()
        iterator = iter(batches)
        armed[0] = True
        if pending:
            raise Interrupted(pending[0])
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
    except Interrupted as exc:
        reason = f"interrupted by {exc}"
        exit_code = ExitCode.for_signal(str(exc))
    except RunFailed as exc:
        reason = str(exc)
    except HarnessError as exc:
        reason, exit_code = str(exc), ExitCode.BAD_INPUT
    except RuntimeError as exc:
        # PyTorch's SIGCHLD handler raises this wherever the loop is when a worker dies; a
        # collective raises it when another rank died.
        text = worker_error(exc)
        what = "the data pipeline failed" if "DataLoader worker" in str(exc) else "run failed"
        reason = f"{what}: {text}"
    except Exception as exc:  # a backend library's own error: one line, results kept
        reason = f"run failed: {worker_error(exc)}"
    finally:
        # Ignore further signals while shutting down, so that a second Ctrl-C cannot lose data.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for collector in collectors:
            collector.stop()
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:  # stop DataLoader workers now, not at garbage collection
            shutdown()
        elif callable(getattr(iterator, "close", None)):  # generators, background threads
            iterator.close()  # type: ignore[union-attr]
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return complete, reason, exit_code


def _finish(
    context: RunContext,
    records: LoopRecords,
    collectors: list[Collector],
    evaluation: dict[str, Any] | None,
    complete: bool,
    reason: str | None,
    prepared: PreparedRun,
) -> Summary | None:
    """Gather every rank's records on rank 0 and write the tables and the summary."""
    from harness.train import distributed

    local = rank_records(context.ranks.rank, records, collectors)
    try:
        gathered = distributed.gather(local, context.ranks)
    except RuntimeError as exc:  # a partner rank is gone: keep this rank's own records
        gathered = [local]
        reason = reason or f"run failed: {one_line(exc, 300)}"
        complete = False
    if not context.ranks.is_main or gathered is None:
        return None
    shutil.rmtree(context.folder / "ranks", ignore_errors=True)  # emulated ranks' pid files
    return write_results(context, gathered, evaluation, complete, reason, prepared)


def write_results(
    context: RunContext,
    parts: list[RankRecords],
    evaluation: dict[str, Any] | None,
    complete: bool,
    reason: str | None,
    prepared: PreparedRun,
) -> Summary:
    """The run's tables and summary from every rank's records (rank 0's first)."""
    import pandas as pd

    folder = context.folder
    results.write_table(folder, "steps", step_table(parts))
    results.write_table(folder, "samples", sample_table(parts))
    for name in sorted({n for part in parts for n in part.series}):
        frames = [part.series[name].assign(rank=part.rank) for part in parts if name in part.series]
        results.write_table(folder, f"series_{name}", pd.concat(frames, ignore_index=True))
    times = prepared.compute_times
    summary = build_summary(
        run_id=folder.name,
        scenario=context.scenario,
        emulation=None if times is None else times.document(),
        parts=parts,
        page_cache=context.page_cache,
        dataset_manifest=context.dataset_manifest,
        cache_manifest=context.cache_manifest,
        evaluation=evaluation,
        complete=complete,
        reason=reason,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    results.write_document(folder, results.SUMMARY, dict(summary))
    return summary


def keep_thumbnails(
    context: RunContext, prepared: PreparedRun, model: Any | None, read: list[Any] | None = None
) -> None:
    """The first held-out samples as pictures (``harness.train.samples``), listed in the
    manifest: after the run, outside every measurement; the prediction is the model's after
    the held-out evaluation (None: an emulated run, or no evaluation asked for). ``read``: the
    samples where the evaluation read them already."""
    from harness.train.samples import keep_held_out_samples, model_predictor

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


def rank_records(rank: int, records: LoopRecords, collectors: list[Collector]) -> RankRecords:
    """What this rank measured: the loop's records and its collectors' series and metrics over
    the measured window (the steps after warm-up)."""
    working = [c for c in collectors if c.unavailable is None]
    measured = [s for s in records.steps if not s["warmup"]]
    metrics: dict[str, dict[str, Any]] = {}
    if measured:
        start = min(s["t_start"] for s in measured)
        end = max(s["t_end"] for s in measured)
        for collector in working:
            metrics.update(collector.summary(start, end))
    io = next((c for c in collectors if c.name == "io"), None)
    read_bytes = None
    if io is not None and io.unavailable is None:
        frame = io.frame()
        if len(frame) >= 2:
            read_bytes = int(frame["read_bytes"].iloc[-1] - frame["read_bytes"].iloc[0])
    return RankRecords(
        rank=rank,
        steps=records.steps,
        samples=records.samples,
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
    )
