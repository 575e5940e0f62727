"""The timed training loop: for every step, time waiting for data vs time computing.

Per step: ``wait`` runs from asking the loader for the next batch until it arrives; ``compute``
from then until the optimiser step has finished on the device (on CUDA the step ends with a
synchronise, so GPU time is real time, as MLPerf Storage measures "accelerator utilisation").
busy % = compute / wall over the measured steps (after warm-up); data-wait % = wait / wall.

Records are appended as the loop goes, so that an interrupted run keeps every finished step;
streamed (``LoopRecords.streamed``), they reach the run folder within seconds (``harness.stream``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.pipeline.accounting import FetchLog
from harness.pipeline.batch import Batch, FileError, worker_error
from harness.pipeline.window import NEVER, Timeline, window_figures
from harness.progress import StatusLine
from harness.stream import RowLog, SegmentWriter

# On CUDA the steps run on a stream of their own, created non-blocking: work that a decoder
# library queues on the legacy default stream (which waits for, and holds up, every blocking
# stream) then neither waits for training kernels nor delays them. benchmarks/bench_nvdec.py
# sets this variable to 1 to measure the loop on the default stream instead.
DEFAULT_STREAM_ENV = "HARNESS_DEFAULT_STREAM"


PROGRESS_STEPS = 20  # the live progress line's figures are over the last this many steps


class RunFailed(Exception):
    """The run could not go on (a worker died, a rank vanished): reported in one line, exit 1."""


@dataclass
class LoopRecords:
    """What the loop measured so far, in the run's time base (seconds since its t0)."""

    steps: RowLog = field(default_factory=RowLog)
    samples: RowLog = field(default_factory=RowLog)
    errors: list[FileError] = field(default_factory=list)
    # Samples the pipeline fetched that no step took (still prefetched when the run stopped),
    # rows of t_end, requested_bytes and first_time_bytes; None: the backend does not log its
    # fetches (``PendingFetches``)
    unconsumed: list[dict[str, Any]] | None = None
    # The fetch log's records no step has taken yet, matched as the steps take samples
    fetches: PendingFetches | None = None

    @classmethod
    def streamed(cls, run_folder: Any, rank: int, batch_size: int) -> LoopRecords:
        """Records whose steps and samples go to ``run_folder``'s segment files as the loop
        runs (memory flat in run length; a killed run leaves what was flushed). In memory stay
        only the rows the progress line reads (its last ``PROGRESS_STEPS`` steps and their
        samples), with room to spare: a larger tail only took longer to fill (4,096 steps kept
        grew each rank's memory for seven minutes of a 20 ms step)."""
        keep = 2 * PROGRESS_STEPS
        return cls(
            steps=RowLog(SegmentWriter(run_folder, "steps", rank), keep=keep),
            samples=RowLog(SegmentWriter(run_folder, "samples", rank), keep=keep * batch_size),
        )

    def close(self) -> None:
        """Write the rows still held (the loop has ended)."""
        self.steps.close()
        self.samples.close()


@dataclass(frozen=True)
class Device:
    torch_device: torch.device
    precision: str  # "fp32" or "bf16"

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"


def resolve_device(device: str, precision: str, local_rank: int = 0) -> Device:
    """The scenario's device and precision, with "auto" settled; a clear error when CUDA is asked
    for and absent."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise HarnessError(
            f"training.device cuda: no CUDA device is available (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use -o training.device=cpu or auto"
        )
    chosen = (
        torch.device(f"cuda:{local_rank}")
        if (device == "cuda" or (device == "auto" and cuda))
        else torch.device("cpu")
    )
    if precision == "auto":
        precision = "bf16" if chosen.type == "cuda" else "fp32"
    return Device(chosen, precision)


def prepare_inputs(batch: Batch, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
    images = batch.image.to(device.torch_device, non_blocking=True)
    masks = batch.mask.to(device.torch_device, non_blocking=True).long()
    images = images.float().div_(255.0).sub_(0.5)
    if device.is_cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


# One training step on a batch that has arrived: returns the loss (None where no model runs),
# with the device's work finished when it returns.
StepFunction = Callable[[Batch], float | None]


@runtime_checkable
class DrawnStep(Protocol):
    """A step function whose compute time is drawn rather than run (an emulated accelerator's):
    ``drawn_s`` is the time it drew for its last step, recorded as ``compute_nominal_s`` beside
    the measured ``compute_s`` (NaN for a real step)."""

    drawn_s: float

    def __call__(self, batch: Batch) -> float | None: ...


def real_step(model: nn.Module, optimizer: torch.optim.Optimizer, device: Device) -> StepFunction:
    """The U-Net's forward, loss, backward and optimiser step (bf16 autocast where asked)."""
    autocast = torch.autocast(
        device.torch_device.type, dtype=torch.bfloat16, enabled=device.precision == "bf16"
    )

    def step(batch: Batch) -> float:
        images, masks = prepare_inputs(batch, device)
        with autocast:
            logits = model(images)
        loss = F.cross_entropy(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.is_cuda:
            # The step's own stream: decoder threads (nvdec) work on theirs meanwhile.
            torch.cuda.current_stream(device.torch_device).synchronize()
        return float(loss.item())

    return step


def _training_stream(device: Device) -> contextlib.AbstractContextManager:
    """On CUDA, a non-blocking stream of the loop's own (see DEFAULT_STREAM_ENV); else nothing."""
    if not device.is_cuda or os.environ.get(DEFAULT_STREAM_ENV) == "1":
        return contextlib.nullcontext()
    return torch.cuda.stream(torch.cuda.Stream(device.torch_device))


def train(
    step_function: StepFunction,
    batches: Iterable[Batch],
    device: Device,
    *,
    t0: float,
    warmup_steps: int,
    steps: int | None,
    duration_s: float | None,
    records: LoopRecords,
    synchronise: Callable[[bool], bool] | None = None,
    progress: TrainingProgress | None = None,
) -> None:
    """Run training steps until ``steps`` are done or ``duration_s`` of measured time passed.

    Per step: ``wait_s`` (asking for the batch until it arrives), ``compute_s`` (the step
    function) and ``barrier_s`` (``synchronise``: the stand-in for the all-reduce between
    emulated accelerators, 0 without one), each timed on its own; ``compute_nominal_s``, the
    compute time an emulated step drew (NaN for a real one). ``synchronise`` takes this
    rank's wish to stop and returns whether all ranks stop, so that every rank runs the same
    number of steps and none waits for a partner that has left."""
    # The live line ends when the loop does, however it ends, so the next output starts a line.
    shown = contextlib.closing(progress) if progress is not None else contextlib.nullcontext()
    with _training_stream(device), shown:
        iterator = iter(batches)
        measured_since: float | None = None
        drawn = step_function if isinstance(step_function, DrawnStep) else None
        step = 0
        while True:
            started = time.monotonic()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except RuntimeError as exc:  # DataLoader: a worker was killed or exited
                raise RunFailed(f"the data pipeline failed: {worker_error(exc)}") from None
            arrived = time.monotonic()
            records.errors.extend(batch.errors)
            if batch.fatal is not None:
                path, message = batch.fatal
                raise HarnessError(f"{path}: {message} (pipeline.on_corrupt is fail)")
            loss = step_function(batch)
            computed = time.monotonic()
            if loss is not None and not np.isfinite(loss):
                raise RunFailed(f"the loss became {loss} at step {step}: training diverged")
            if step + 1 == warmup_steps:
                measured_since = computed
            elif step + 1 > warmup_steps:
                measured_since = measured_since or started
            stop = (steps is not None and step + 1 >= steps) or (
                duration_s is not None
                and measured_since is not None
                and computed - measured_since >= duration_s
            )
            if synchronise is not None:
                stop = synchronise(stop)
            finished = time.monotonic()
            records.steps.append(
                {
                    "step": step,
                    "t_start": started - t0,
                    "t_end": finished - t0,
                    "wait_s": arrived - started,
                    "compute_s": computed - arrived,
                    "compute_nominal_s": float("nan") if drawn is None else drawn.drawn_s,
                    "barrier_s": finished - computed,
                    "loss": float("nan") if loss is None else loss,
                    "samples": len(batch),
                    "warmup": step < warmup_steps,
                }
            )
            _record_samples(records, batch, step, t0)
            if progress is not None:
                progress(records)
            step += 1
            if stop:
                break


def run_seconds(end_ns: np.ndarray, t0: float) -> np.ndarray:
    """Monotonic nanoseconds as seconds of the run's clock (one formula: the fetch log's moments
    are matched to the samples' to the bit)."""
    return end_ns / 1e9 - t0


class PendingFetches:
    """The fetches of one rank's log (``FetchLog``) that no step has taken yet, matched as the
    loop goes, so that what is kept, in memory and in the log's file, is about what the pipeline
    holds prefetched, whatever the run's length.

    A taken sample and its fetch's record meet by the moment the fetch ended (both computed by
    ``run_seconds``, so equal to the bit), as a multiset: two samples may share a moment. A
    sample's record is written before the sample can reach a step (its worker writes it first),
    so once the log has been read, every sample taken before has found its record; one that has
    not means the backend does not log its fetches, and what was never taken is then not known
    (``known`` False). The log is read at most every ``every_s`` as the steps report their
    samples, and what has been read is released from its file."""

    def __init__(self, log: FetchLog, t0: float, every_s: float = 1.0) -> None:
        self._log, self._t0, self._every_s = log, t0, every_s
        self._offset = 0  # read up to here
        self._read_at = time.monotonic()
        # fetched moment -> (requested, first-time bytes) of each record not taken yet
        self._pending: dict[float, list[tuple[float, float]]] = {}
        self._taken: Counter[float] = Counter()  # taken; their records not read yet
        self.known = True

    def took(self, fetched: Iterable[float]) -> None:
        """A step took the samples whose fetches ended at ``fetched`` (run seconds)."""
        if not self.known:
            return
        for moment in fetched:
            records = self._pending.get(moment)
            if records:
                records.pop()
                if not records:
                    del self._pending[moment]
            else:
                self._taken[moment] += 1
        if time.monotonic() - self._read_at >= self._every_s:
            self.update()

    def update(self) -> None:
        """Read the records the log gained, match them, release them from the file."""
        if not self.known:
            return
        self._read_at = time.monotonic()
        logged, self._offset = self._log.read(self._offset)
        columns = zip(
            run_seconds(logged["end_ns"], self._t0).tolist(),
            logged["requested"].tolist(),
            logged["first_time"].tolist(),
            strict=True,
        )
        for moment, requested, first_time in columns:
            if self._taken[moment] > 0:
                self._taken[moment] -= 1
                if not self._taken[moment]:
                    del self._taken[moment]
            else:
                self._pending.setdefault(moment, []).append((requested, first_time))
        if self._taken:  # taken, yet not in the log: the backend does not log its fetches
            self.known = False
            self._pending.clear()
            self._taken.clear()
        self._log.release(self._offset)

    def waiting(self, since: float) -> Timeline:
        """The fetches not taken yet that ended at ``since`` or later (run seconds)."""
        pending = [
            (moment, requested)
            for moment, records in self._pending.items()
            if moment >= since
            for requested, _ in records
        ]
        return Timeline.of([m for m, _ in pending], [NEVER] * len(pending), [r for _, r in pending])

    def unconsumed(self) -> list[dict[str, Any]] | None:
        """Once the pipeline has stopped: the samples it fetched that no step took, as rows
        of ``LoopRecords.unconsumed``, in the order their fetches ended; None when not known."""
        self.update()
        if not self.known:
            return None
        return [
            {"t_end": moment, "requested_bytes": requested, "first_time_bytes": first_time}
            for moment in sorted(self._pending)
            for requested, first_time in self._pending[moment]
        ]


def _record_samples(records: LoopRecords, batch: Batch, step: int, t0: float) -> None:
    """Per sample: when it was ready, its fetch latency and bytes (NaN: not measured)."""
    ends = run_seconds(batch.end_ns, t0)
    columns = zip(
        ends.tolist(),
        (batch.latency_ns / 1e6).tolist(),
        batch.requested_bytes.tolist(),
        batch.first_time_bytes.tolist(),
        strict=True,
    )
    for end, latency_ms, requested, first_time in columns:
        records.samples.append(
            {
                "t_end": end,
                "latency_ms": latency_ms,
                "requested_bytes": requested,
                "first_time_bytes": first_time,
                "step": step,
            }
        )
    if records.fetches is not None:
        records.fetches.took(ends.tolist())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Batch], device: Device) -> None:
    """Re-estimate BatchNorm's running statistics with the final weights ("precise BN").

    After a short run the running averages still carry the early, untrained weights' statistics
    and evaluation mode would understate what the network learnt; an exact average over a few
    training batches fixes that without touching the weights."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    for batch in batches:
        images, _masks = prepare_inputs(batch, device)
        model(images)
    for norm, momentum in zip(norms, saved, strict=True):
        norm.momentum = momentum


class Evaluation(TypedDict):
    """The held-out evaluation of a trained model (:func:`evaluate`)."""

    miou: float | None  # None: no class in the truth nor in the prediction
    miou_chance: float | None  # of always answering the most common class
    iou_per_class: list[float | None]


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[Batch], device: Device, classes: int
) -> Evaluation:
    """mIoU of the model on held-out samples, and of always answering the most common class
    (the "chance" a real learner must beat)."""
    model.eval()
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    counts = torch.zeros(classes, dtype=torch.int64)
    autocast = torch.autocast(
        device.torch_device.type, dtype=torch.bfloat16, enabled=device.precision == "bf16"
    )
    for batch in batches:
        images, masks = prepare_inputs(batch, device)
        with autocast:
            predicted = model(images).argmax(dim=1)
        truth = masks.clamp(0, classes - 1).flatten().cpu()
        guess = predicted.flatten().cpu()
        confusion += torch.bincount(truth * classes + guess, minlength=classes * classes).reshape(
            classes, classes
        )
        counts += torch.bincount(truth, minlength=classes)
    model.train()
    majority = int(counts.argmax())
    chance = torch.zeros(classes, classes, dtype=torch.int64)
    chance[:, majority] = counts
    return {
        "miou": mean_iou(confusion),
        "miou_chance": mean_iou(chance),
        "iou_per_class": iou_per_class(confusion),
    }


def iou_per_class(confusion: torch.Tensor) -> list[float | None]:
    """IoU of each class (None for a class absent from both truth and prediction)."""
    true_positive = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - true_positive
    return [float(tp / u) if u > 0 else None for tp, u in zip(true_positive, union, strict=True)]


def mean_iou(confusion: torch.Tensor) -> float | None:
    values = [v for v in iou_per_class(confusion) if v is not None]
    return float(np.mean(values)) if values else None


class TrainingProgress:
    """A live line: steps, samples/s, busy %, MB/s requested over the last 20 steps (rewritten
    every ``every_s`` on a terminal, a line every ten seconds in logs). MB/s requested follows
    the summary's window rule (``harness.pipeline.window``): the bytes of the fetches that ended
    in those steps' time, the ones still prefetched included (``LoopRecords.fetches``)."""

    def __init__(self, total_steps: int | None, every_s: float = 1.0) -> None:
        self.total_steps = total_steps
        self._status = StatusLine(every_s=every_s, log_every_s=10.0, keep=True)

    def __call__(self, records: LoopRecords) -> None:
        if not self._status.due():
            return
        recent = records.steps.tail(PROGRESS_STEPS)
        wall = recent[-1]["t_end"] - recent[0]["t_start"] if recent else 0
        if wall <= 0:
            return
        figures = window_figures(
            self._timeline(records, recent), recent[0]["t_start"], recent[-1]["t_end"]
        )
        busy = sum(r["compute_s"] for r in recent) / wall * 100
        of = f"/{self.total_steps}" if self.total_steps else ""
        self._status.show(
            f"step {len(records.steps)}{of}  {figures.samples_per_s or 0:7.1f} samples/s  busy "
            f"{busy:5.1f} %  {figures.requested_MBps or 0:7.1f} MB/s requested"
        )

    def _timeline(self, records: LoopRecords, recent: list[dict[str, Any]]) -> Timeline:
        """The samples the ``recent`` steps took, and the fetches that ended since they began
        that no step took yet (older ones cannot fall in the window)."""
        count = sum(r["samples"] for r in recent)
        taken_at = {r["step"]: r["t_start"] + r["wait_s"] for r in recent}
        consumed = records.samples.tail(count)
        timeline = Timeline.of(
            [s["t_end"] for s in consumed],
            [taken_at.get(s["step"], NEVER) for s in consumed],
            [s["requested_bytes"] for s in consumed],
        )
        if records.fetches is None:
            return timeline
        records.fetches.update()
        return timeline + records.fetches.waiting(since=recent[0]["t_start"])

    def close(self) -> None:
        self._status.close()


def progress_printer(total_steps: int | None, every_s: float = 1.0) -> TrainingProgress:
    """The live line of a run's training loop (see ``TrainingProgress``)."""
    return TrainingProgress(total_steps, every_s)
