"""One run of a scenario, from checks to results folder.

Order matters: everything that can refuse the run (backend, device, dataset, cache) is checked
before any work; the manifest is written before the first step; whatever happens after that
(Ctrl-C, SIGTERM, a dead worker, a corrupt file under ``fail``), the finished steps and collected
series are written, marked ``"complete": false`` with the reason, and no worker is left behind.
What the numbers mean is decided in ``harness.summary`` (pure); this module only gathers them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import results
from harness.collect.sampler import Collector
from harness.data.cache import read_cache_manifest
from harness.data.manifest import require_complete
from harness.errors import HarnessError, one_line
from harness.pipeline import BatchRequest, require_backend
from harness.pipeline.batch import Batch
from harness.scenario import LoadedScenario, Scenario
from harness.summary import RankRecords, Summary, build_summary, sample_table, step_table
from harness.train.distributed import Ranks
from harness.train.loop import Device, LoopRecords, StepFunction


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
    exit_code: int  # 0 complete, 1 run failed, 2 bad input, 130/143 interrupted
    summary: Summary | None


def run_scenario(
    loaded: LoadedScenario,
    *,
    results_root: Path,
    command: list[str],
    repeat: tuple[int, int] | None = None,
    quiet: bool = False,
) -> RunOutcome:
    """Run the scenario's training loop with its collectors and write ``results/<run-id>/``."""
    import torch

    from harness.pipeline.sources import SamplePlan, build_source
    from harness.train import distributed
    from harness.train.loop import resolve_device
    from harness.train.model import cpu_threads_for

    scenario = loaded.scenario
    backend = require_backend(scenario.pipeline.backend)
    device = resolve_device(
        scenario.training.device,
        scenario.training.precision,
        int(os.environ.get("LOCAL_RANK", "0")),
    )
    dataset_dir = Path(scenario.dataset.path)
    dataset_manifest = require_complete(dataset_dir, str(loaded.file))
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
    ranks = distributed.init_ranks(device.is_cuda)
    folder = results_root / distributed.broadcast(results.new_run_id(scenario.name), ranks)
    if ranks.is_main:
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise HarnessError(f"cannot create the run folder {folder}: {exc.strerror}") from None
        results.write_document(
            folder,
            results.MANIFEST,
            {
                "run_id": folder.name,
                "scenario": scenario.model_dump(mode="json"),
                "scenario_file": str(loaded.file),
                "command": command,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "ranks": ranks.world,
                "device": str(device.torch_device),
                "precision": device.precision,
                "cpu_threads": cpu_threads_for(scenario),
                "repeat": None if repeat is None else {"index": repeat[0], "of": repeat[1]},
                **_environment(dataset_dir),
            },
        )
    from harness import pagecache

    page_cache = pagecache.prepare(
        scenario.pipeline.page_cache,
        source.data_files(),
        dataset_dir,
        act=ranks.local_rank == 0,
    )
    context = RunContext(
        scenario, folder, ranks, device, dataset_manifest, cache_manifest, quiet, page_cache
    )
    distributed.barrier(ranks)

    torch.manual_seed(scenario.training.seed)
    model, step_function = _real_training(context)
    request = BatchRequest(
        source=source,
        plan=plan,
        batch_size=scenario.pipeline.batch_size,
        crop=scenario.pipeline.crop,
        workers=scenario.pipeline.workers,
        prefetch_factor=scenario.pipeline.prefetch_factor,
        on_corrupt=scenario.pipeline.on_corrupt,
        seed=scenario.training.seed,
        rank=ranks.rank,
        world=ranks.world,
        steps=scenario.training.steps,
        device=device.torch_device,
        work_dir=folder,
    )
    batches = backend.batches(request)
    records = LoopRecords()
    t0 = time.monotonic()
    collectors = _collectors(scenario, dataset_dir, t0, ranks)
    complete, reason, exit_code = _train_and_collect(
        context, step_function, batches, t0, records, collectors
    )
    evaluation = None
    if complete:
        from harness.train.model import evaluate_model

        classes = int(dataset_manifest["classes"])
        evaluation = evaluate_model(model, scenario, source, plan, classes, device)
    summary = _finish(context, records, collectors, evaluation, complete, reason)
    distributed.shutdown(ranks)
    return RunOutcome(folder if ranks.is_main else None, complete, reason, exit_code, summary)


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


def _collectors(scenario: Scenario, dataset_dir: Path, t0: float, ranks: Ranks) -> list[Collector]:
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


def _train_and_collect(
    context: RunContext,
    step_function: StepFunction,
    batches: Iterable[Batch],
    t0: float,
    records: LoopRecords,
    collectors: list[Collector],
) -> tuple[bool, str | None, int]:
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
    complete, reason, exit_code = False, None, 1
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
            progress=None if quiet or not ranks.is_main else progress_printer(steps),
        )
        complete, exit_code = True, 0
    except Interrupted as exc:
        reason = f"interrupted by {exc}"
        exit_code = 143 if str(exc) == "SIGTERM" else 130
    except RunFailed as exc:
        reason = str(exc)
    except HarnessError as exc:
        reason, exit_code = str(exc), 2
    except RuntimeError as exc:
        # PyTorch's SIGCHLD handler raises this wherever the loop is when a worker dies; a
        # collective raises it when another rank died.
        text = one_line(exc, 300)
        what = "the data pipeline failed" if "DataLoader worker" in text else "run failed"
        reason = f"{what}: {text}"
    except Exception as exc:  # a backend library's own error: one line, results kept
        reason = f"run failed: {type(exc).__name__}: {one_line(exc, 300)}"
    finally:
        # Ignore further signals while shutting down, so that a second Ctrl-C cannot lose data.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for collector in collectors:
            collector.stop()
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:  # stop DataLoader workers now, not at garbage collection
            shutdown()
        elif callable(getattr(iterator, "close", None)):  # generators: run their clean-up now
            iterator.close()  # type: ignore[union-attr]
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if sys.stderr.isatty() and not quiet:
            print(file=sys.stderr)
    return complete, reason, exit_code


def _finish(
    context: RunContext,
    records: LoopRecords,
    collectors: list[Collector],
    evaluation: dict[str, Any] | None,
    complete: bool,
    reason: str | None,
) -> Summary | None:
    """Gather every rank's records on rank 0 and write the tables and the summary."""
    from harness.train import distributed

    folder, ranks = context.folder, context.ranks
    local = _rank_records(ranks.rank, records, collectors)
    gathered = distributed.gather(local, ranks)
    if not ranks.is_main or gathered is None:
        return None
    results.write_table(folder, "steps", step_table(gathered))
    results.write_table(folder, "samples", sample_table(gathered))
    import pandas as pd

    for name in sorted({n for part in gathered for n in part.series}):
        frames = [
            part.series[name].assign(rank=part.rank) for part in gathered if name in part.series
        ]
        results.write_table(folder, f"series_{name}", pd.concat(frames, ignore_index=True))
    summary = build_summary(
        run_id=folder.name,
        scenario=context.scenario,
        parts=gathered,
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


def _rank_records(rank: int, records: LoopRecords, collectors: list[Collector]) -> RankRecords:
    """What this rank measured: the loop's records and its collectors' series and metrics over
    the measured window (the steps after warm-up)."""
    working = [c for c in collectors if c.unavailable is None]
    measured = [s for s in records.steps if not s["warmup"]]
    metrics: dict[str, dict[str, Any]] = {}
    if measured:
        start, end = measured[0]["t_start"], max(s["t_end"] for s in measured)
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
