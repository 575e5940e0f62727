"""One run of a scenario, from checks to results folder.

Order matters: everything that can refuse the run (backend, device, dataset, cache) is checked
before any work; the manifest is written before the first step; whatever happens after that
(Ctrl-C, SIGTERM, a dead worker, a corrupt file under ``fail``), the finished steps and collected
series are written, marked ``"complete": false`` with the reason, and no worker is left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import results
from harness.data.cache import read_cache_manifest
from harness.data.files import sync_filesystem
from harness.data.manifest import require_complete
from harness.errors import HarnessError
from harness.scenario import LoadedScenario, Scenario
from harness.stats import metric


class Interrupted(BaseException):
    """SIGTERM, or SIGINT (Ctrl-C): stop, keep what was collected."""


@dataclass
class RunContext:
    """What every stage of one run needs to know about it, passed explicitly."""

    scenario: Scenario
    folder: Path
    ranks: Any  # train.distributed.Ranks
    device: Any  # train.loop.Device
    dataset_manifest: dict[str, Any]
    cache_manifest: dict[str, Any] | None
    quiet: bool
    page_cache: dict[str, Any] | None = None


@dataclass
class RunOutcome:
    folder: Path | None  # None on ranks other than 0
    complete: bool
    reason: str | None
    exit_code: int  # 0 complete, 1 run failed, 2 bad input, 130/143 interrupted
    summary: dict[str, Any] | None


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

    from harness.pipeline import require_backend
    from harness.pipeline.sources import SamplePlan, build_source
    from harness.train import distributed
    from harness.train.loop import LoopRecords, resolve_device

    scenario = loaded.scenario
    hint = str(loaded.file)
    require_backend(scenario.pipeline.backend)
    device = resolve_device(
        scenario.training.device,
        scenario.training.precision,
        int(os.environ.get("LOCAL_RANK", "0")),
    )
    dataset_dir = Path(scenario.dataset.path)
    dataset_manifest = require_complete(dataset_dir, hint)
    cache_manifest = read_cache_manifest(scenario) if scenario.pipeline.mode == "cached" else None
    source = build_source(scenario, dataset_manifest, cache_manifest)
    if scenario.pipeline.backend == "dali":
        from harness.pipeline.dali_backend import check_scenario

        check_scenario(source, device.is_cuda)
    if scenario.pipeline.backend == "nvdec":
        from harness.pipeline.nvdec_backend import check_scenario as check_nvdec

        check_nvdec(source, device.is_cuda)
    plan = SamplePlan(
        source.files,
        scenario.pipeline.crop,
        scenario.training.seed,
        scenario.pipeline.shuffle,
        scenario.pipeline.sequence_length,
    )
    ranks = distributed.init_ranks(device.is_cuda)
    folder = results_root / distributed.broadcast(results.new_run_id(scenario.name), ranks)
    environment = _environment(dataset_dir)
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
                **environment,
            },
        )
    context = RunContext(scenario, folder, ranks, device, dataset_manifest, cache_manifest, quiet)
    context.page_cache = _prepare_page_cache(scenario, source.data_files(), ranks)
    distributed.barrier(ranks)

    torch.manual_seed(scenario.training.seed)
    _set_cpu_threads(scenario, device)
    model, optimizer = _model(scenario, dataset_manifest, device, ranks)
    loader = _batches(scenario, source, plan, device, ranks, folder)
    _page_in_training_code(model, scenario, device)
    records = LoopRecords()
    t0 = time.monotonic()
    collectors = _collectors(scenario, dataset_dir, t0, ranks)
    complete, reason, exit_code = _train_and_collect(
        context, model, optimizer, loader, t0, records, collectors
    )
    evaluation = _evaluate(context, model, source, plan) if complete else None
    summary = _finish(context, records, collectors, evaluation, complete, reason)
    distributed.shutdown(ranks)
    return RunOutcome(folder if ranks.is_main else None, complete, reason, exit_code, summary)


def _batches(
    scenario: Scenario, source: Any, plan: Any, device: Any, ranks: Any, folder: Path
) -> Any:
    """The training batches of the scenario's backend (an iterable of batch dicts)."""
    from harness.pipeline.loader import RankSampler, SegmentationSamples, build_loader
    from harness.pipeline.sources import DecodedVideoSource

    pipeline, steps = scenario.pipeline, scenario.training.steps
    shared = {
        "batch_size": pipeline.batch_size,
        "crop": pipeline.crop,
        "workers": pipeline.workers,
        "rank": ranks.rank,
        "world": ranks.world,
        "steps": steps,
    }
    device_index = device.torch_device.index if device.is_cuda else None
    if pipeline.backend == "dali" and isinstance(source, DecodedVideoSource):
        from harness.pipeline.dali_backend import build_dali_video_batches

        folder.mkdir(parents=True, exist_ok=True)  # ranks other than 0 may not have it yet
        return build_dali_video_batches(
            source,
            plan,
            seed=scenario.training.seed,
            device_index=device_index,
            work_dir=folder,
            **shared,
        )
    if pipeline.backend == "dali":
        from harness.pipeline.dali_backend import build_dali_batches

        return build_dali_batches(
            source, plan, seed=scenario.training.seed, device_index=device_index, **shared
        )
    if pipeline.backend == "nvdec":
        from harness.pipeline.nvdec_backend import NvdecBatches

        return NvdecBatches(
            source,
            plan,
            prefetch_factor=pipeline.prefetch_factor,
            device=device.torch_device,
            on_corrupt=pipeline.on_corrupt,
            **shared,
        )
    sampler = RankSampler(ranks.rank, ranks.world, pipeline.batch_size, steps)
    dataset = SegmentationSamples(source, plan, pipeline.crop, pipeline.on_corrupt)
    return build_loader(
        dataset,
        sampler,
        batch_size=pipeline.batch_size,
        workers=pipeline.workers,
        prefetch_factor=pipeline.prefetch_factor,
        pin_memory=device.is_cuda,
    )


def cpu_threads_for(scenario: Scenario) -> int:
    """Training threads on CPU: as configured, else the cores the DataLoader workers leave."""
    from harness.data.parallel import available_cpus

    configured = scenario.training.cpu_threads
    return configured or max(1, available_cpus() - scenario.pipeline.workers)


def _set_cpu_threads(scenario: Scenario, device: Any) -> int | None:
    import torch

    if device.is_cuda:
        return None
    threads = cpu_threads_for(scenario)
    torch.set_num_threads(threads)
    return threads


def _environment(dataset_dir: Path) -> dict[str, Any]:
    from harness.env import environment

    return environment(dataset_dir)


def _model(scenario: Scenario, dataset_manifest: dict, device: Any, ranks: Any) -> tuple:
    import torch

    from harness.train.unet import UNet

    model = UNet(
        int(dataset_manifest["classes"]),
        scenario.training.model.width,
        scenario.training.model.depth,
    ).to(device.torch_device)
    if device.is_cuda:
        model = model.to(memory_format=torch.channels_last)
        # Crops have one fixed size: let cuDNN pick its fastest kernels (in the blank warm-up
        # pass before the collectors start, not in measured steps).
        torch.backends.cudnn.benchmark = True
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.torch_device.index] if device.is_cuda else None
        model = DistributedDataParallel(model, device_ids=ids)
    training = scenario.training
    if training.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr)
    return model, optimizer


def _page_in_training_code(model: Any, scenario: Scenario, device: Any) -> None:
    """One forward and backward pass on a blank batch, before the collectors start.

    The first pass loads lazily imported modules and pages in the compute libraries' code
    (hundreds of MB of shared objects): reads from storage that have nothing to do with the
    dataset and would otherwise be counted as the run's I/O. Evaluation mode, and no optimiser
    step: neither the weights nor the BatchNorm statistics change."""
    import torch

    from harness.train.loop import prepare_inputs

    crop, batch = scenario.pipeline.crop, scenario.pipeline.batch_size
    blank = {
        "image": torch.zeros(batch, 3, crop, crop, dtype=torch.uint8),
        "mask": torch.zeros(batch, crop, crop, dtype=torch.uint8),
    }
    images, masks = prepare_inputs(blank, device)
    model.eval()
    with torch.autocast(
        device.torch_device.type, dtype=torch.bfloat16, enabled=device.precision == "bf16"
    ):
        logits = model(images)
    torch.nn.functional.cross_entropy(logits.float(), masks).backward()
    model.zero_grad(set_to_none=True)
    model.train()
    if device.is_cuda:
        torch.cuda.synchronize(device.torch_device)


def _prepare_page_cache(scenario: Scenario, files: list[Path], ranks: Any) -> dict[str, Any]:
    """Cold: evict the dataset's files and check they left; warm: read them all once first.
    One process per machine does it (local rank 0); the others wait at the barrier."""
    from harness import pagecache

    condition = scenario.pipeline.page_cache
    total = sum(path.stat().st_size for path in files)
    started = time.monotonic()
    if ranks.local_rank == 0:
        if condition == "cold":
            # Flush the filesystems first: freshly written data still has metadata in flight,
            # and reading it back would show up as reads the pipeline never made.
            for folder in {path.parent for path in files[:1]} | {Path(scenario.dataset.path)}:
                sync_filesystem(folder)
            pagecache.evict(files)
        else:
            pagecache.warm(files)
    resident, _ = pagecache.resident_bytes(files)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "condition": condition,
        "dataset_files": len(files),
        "dataset_bytes": total,
        "resident_bytes_at_start": resident,
        "resident_fraction_at_start": round(resident / total, 4) if total else None,
        "ram_bytes": ram,
        "seconds": round(time.monotonic() - started, 3),
    }


def _collectors(scenario: Scenario, dataset_dir: Path, t0: float, ranks: Any) -> list:
    from harness.collect import make_collectors

    names = [n for n in scenario.collectors.enabled if n != "latency"]
    if ranks.local_rank != 0:  # one process per machine samples the GPUs
        names = [n for n in names if n != "gpu"]
    return make_collectors(
        names,
        rate_hz=scenario.collectors.rate_hz,
        root_pid=os.getpid(),
        dataset_path=dataset_dir,
        t0=t0,
    )


def _train_and_collect(
    context: RunContext, model, optimizer, loader, t0: float, records, collectors: list
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
        iterator = iter(loader)
        armed[0] = True
        if pending:
            raise Interrupted(pending[0])
        train(
            model,
            optimizer,
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
        text = " ".join(str(exc).split())[:300]
        what = "the data pipeline failed" if "DataLoader worker" in text else "run failed"
        reason = f"{what}: {text}"
    except Exception as exc:  # a backend library's own error: one line, results kept
        reason = f"run failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
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
            iterator.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if sys.stderr.isatty() and not quiet:
            print(file=sys.stderr)
    return complete, reason, exit_code


def _evaluate(context: RunContext, model, source, plan) -> dict[str, Any]:
    from harness.pipeline.loader import SegmentationSamples, collate
    from harness.train.loop import evaluate, recalibrate_batchnorm

    scenario, device = context.scenario, context.device
    count = scenario.training.eval_samples
    if count == 0:
        return {}
    crop, batch = scenario.pipeline.crop, scenario.pipeline.batch_size

    def batches(samples: SegmentationSamples, first: int, total: int) -> Any:
        return (
            collate([samples[first + n] for n in range(i, min(i + batch, total))])
            for i in range(0, total, batch)
        )

    network = getattr(model, "module", model)
    # Training samples never drawn by the run (numbers far past its sequence) for precise BN.
    unseen = SegmentationSamples(source, plan, crop, "skip")
    recalibrate_batchnorm(network, batches(unseen, 2**41, max(4 * batch, 32)), device)
    held_out = SegmentationSamples(source, plan, crop, "skip", held_out=True)
    classes = int(context.dataset_manifest["classes"])
    return evaluate(network, batches(held_out, 0, count), device, classes)


def _finish(
    context: RunContext,
    records,
    collectors: list,
    evaluation: dict | None,
    complete: bool,
    reason: str | None,
) -> dict[str, Any] | None:
    """Gather every rank's records on rank 0 and write the tables and the summary."""
    from harness import summary as summaries
    from harness.train import distributed

    scenario, folder, ranks = context.scenario, context.folder, context.ranks
    page_cache, dataset_manifest = context.page_cache, context.dataset_manifest

    local = {
        "rank": ranks.rank,
        "steps": records.steps,
        "samples": records.samples,
        "errors": records.errors,
        "series": {c.name: c.frame() for c in collectors if c.unavailable is None},
        "collector_metrics": _collector_metrics(collectors, records),
        "unavailable": {
            **{c.name: c.unavailable for c in collectors if c.unavailable is not None},
            **{
                c.name: f"stopped sampling: {c.error}"
                for c in collectors
                if getattr(c, "error", None)
            },
        },
        "sampler_cpu_s": {c.name: c.cpu_seconds for c in collectors},
        "io_read_bytes": _tree_read_bytes(collectors),
        "device": next((getattr(c, "device", None) for c in collectors if c.name == "io"), None),
    }
    gathered = distributed.gather(local, ranks)
    if not ranks.is_main or gathered is None:
        return None
    steps = pd.DataFrame(
        [dict(row, rank=part["rank"]) for part in gathered for row in part["steps"]],
        columns=[
            "step",
            "t_start",
            "t_end",
            "wait_s",
            "compute_s",
            "loss",
            "samples",
            "warmup",
            "rank",
        ],
    )
    samples = pd.DataFrame(
        [dict(row, rank=part["rank"]) for part in gathered for row in part["samples"]],
        columns=["t_end", "latency_ms", "requested_bytes", "first_time_bytes", "step", "rank"],
    )
    steps["warmup"] = steps["warmup"].astype(bool)
    results.write_table(folder, "steps", steps)
    results.write_table(folder, "samples", samples)
    for name in sorted({n for part in gathered for n in part["series"]}):
        frames = [
            part["series"][name].assign(rank=part["rank"])
            for part in gathered
            if name in part["series"]
        ]
        results.write_table(folder, f"series_{name}", pd.concat(frames, ignore_index=True))

    metrics = summaries.loop_metrics(steps, samples)
    for part in gathered:  # collector metrics: rank 0's, plus the others' where they differ
        for name, value in part["collector_metrics"].items():
            key = (
                name if part["rank"] == 0 or name not in metrics else f"{name}[rank{part['rank']}]"
            )
            metrics.setdefault(key, value)
    if "read_MBps" in metrics and len(gathered) > 1:
        total = sum(
            (p["collector_metrics"].get("read_MBps", {}).get("value") or 0) for p in gathered
        )
        metrics["read_MBps"] = metric(total, "MB/s", "context")
    metrics.update(_storage_metrics(dataset_manifest, context.cache_manifest))
    if evaluation:
        metrics["miou"] = metric(evaluation["miou"], "", "higher")
        metrics["miou_chance"] = metric(evaluation["miou_chance"], "", "context")
    read_parts = [p["io_read_bytes"] for p in gathered]
    read_bytes = None if any(b is None for b in read_parts) else sum(read_parts)
    requested = samples["first_time_bytes"].sum(min_count=1) if len(samples) else None
    requested = None if requested is None or pd.isna(requested) else int(requested)
    gpu_utils = [
        m["value"]
        for k, m in metrics.items()
        if k.startswith("gpu_util_pct[") and m["value"] is not None
    ]
    cross_checks = [
        summaries.bytes_cross_check(read_bytes, requested, page_cache["condition"]),
        summaries.busy_vs_gpu_check(metrics.get("busy_pct", {}).get("value"), gpu_utils),
    ]
    errors = [error for part in gathered for error in part["errors"]]
    corrupt: dict[str, int] = {}
    for path, _message in errors:
        corrupt[path] = corrupt.get(path, 0) + 1
    unavailable = {
        f"{name}" + ("" if p["rank"] == 0 else f"[rank{p['rank']}]"): why
        for p in gathered
        for name, why in p["unavailable"].items()
    }
    document = {
        "run_id": folder.name,
        "scenario": scenario.name,
        "complete": complete,
        "reason": reason,
        "ranks": len(gathered),
        "page_cache": page_cache,
        "labels": dataset_manifest["labels"],
        "metrics": metrics,
        "cross_checks": cross_checks,
        "thresholds": summaries.threshold_verdicts(scenario.thresholds, metrics),
        "collectors": {
            "rate_hz": scenario.collectors.rate_hz,
            "unavailable": unavailable,
            "sampler_cpu_s": gathered[0]["sampler_cpu_s"],
            "io_device": gathered[0]["device"],
        },
        "corrupt_files": corrupt,
        "corrupt_samples": [{"file": p, "error": m} for p, m in errors[:100]],
        "iou_per_class": (evaluation or {}).get("iou_per_class"),
        "warnings": _warnings(page_cache, unavailable, corrupt, dataset_manifest, metrics),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    results.write_document(folder, results.SUMMARY, document)
    if not context.quiet:
        print_summary(document, folder)
    return document


def _collector_metrics(collectors: list, records: Any) -> dict[str, dict]:
    import numpy as np

    window = None
    measured = [s for s in records.steps if not s["warmup"]]
    if measured:
        window = (measured[0]["t_start"], float(np.max([s["t_end"] for s in measured])))
    out: dict[str, dict] = {}
    for collector in collectors:
        if collector.unavailable is None and window is not None:
            out.update(collector.summary(*window))
    return out


def _tree_read_bytes(collectors: list) -> int | None:
    """Bytes the run's process tree read from storage while the collectors ran."""
    for collector in collectors:
        if collector.name == "io" and collector.unavailable is None:
            frame = collector.frame()
            if len(frame) >= 2:
                return int(frame["read_bytes"].iloc[-1] - frame["read_bytes"].iloc[0])
    return None


def _storage_metrics(dataset_manifest: dict, cache_manifest: dict | None) -> dict[str, dict]:
    out = {"storage_bytes": metric(dataset_manifest.get("total_bytes"), "B", "context")}
    if cache_manifest is not None:
        out["cache_bytes"] = metric(
            cache_manifest["frame_bytes"] + cache_manifest["mask_bytes"], "B", "context"
        )
        out["expansion"] = metric(cache_manifest["expansion"], "x", "context")
    return out


def _warnings(page_cache, unavailable, corrupt, dataset_manifest, metrics) -> list[str]:
    warnings = []
    if page_cache["dataset_bytes"] < page_cache["ram_bytes"]:
        warnings.append(
            f"the dataset ({page_cache['dataset_bytes'] / 1e9:.2f} GB) is smaller than RAM "
            f"({page_cache['ram_bytes'] / 1e9:.1f} GB): the page cache can hold all of it, so "
            "re-reads during the run (and every read of a warm run) measure memory, not storage"
        )
    fraction = page_cache["resident_fraction_at_start"]
    if page_cache["condition"] == "cold" and fraction is not None and fraction > 0.05:
        warnings.append(
            f"cold start: {fraction:.0%} of the dataset was still in the page cache after eviction"
        )
    for name, why in unavailable.items():
        warnings.append(f"collector {name}: {why}")
    if corrupt:
        warnings.append(
            f"{sum(corrupt.values())} samples skipped from {len(corrupt)} corrupt "
            "file(s) (pipeline.on_corrupt is skip)"
        )
    if str(dataset_manifest.get("labels", "")).startswith("derived:"):
        warnings.append(f"labels were derived ({dataset_manifest['labels']}), not given as masks")
    if metrics.get("busy_pct", {}).get("value") is None:
        warnings.append("no step after warm-up was measured: metrics are empty")
    return warnings


def print_summary(document: dict[str, Any], folder: Path) -> None:
    """The headline numbers, the cross-checks and the thresholds, a line each."""
    metrics = document["metrics"]
    status = "complete" if document["complete"] else f"INCOMPLETE ({document['reason']})"
    print(f"{document['scenario']}: {status} -> {folder}")
    shown = [
        "samples_per_s",
        "busy_pct",
        "data_wait_pct",
        "read_MBps",
        "requested_MBps",
        "fetch_latency_p50_ms",
        "fetch_latency_p99_ms",
        "batch_wait_p50_ms",
        "cpu_pct",
        "loss_first",
        "loss_last",
        "miou",
        "miou_chance",
        "expansion",
    ]
    shown += sorted(k for k in metrics if k.startswith("gpu_util_pct["))
    for name in shown:
        entry = metrics.get(name)
        if entry is None or entry["value"] is None:
            continue
        print(f"  {name:24s} {entry['value']:12.3f} {entry['unit']}")
    for check in document["cross_checks"]:
        print(f"  check: {check['name']}: {check['verdict']}")
    for verdict in document["thresholds"]:
        state = {True: "pass", False: "FAIL", None: "not measured"}[verdict["pass"]]
        print(f"  threshold {verdict['threshold']} {verdict['limit']}: {state}")
    for warning in document["warnings"]:
        print(f"  warning: {warning}")
