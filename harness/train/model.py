"""The real model of a run: the U-Net and its optimiser, the CPU threads it trains with, the
blank pass that pages its code in before measuring, and the held-out evaluation after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from harness.errors import HarnessError
from harness.pipeline.batch import Batch, Sample
from harness.scenario import Scenario
from harness.train.distributed import Ranks
from harness.train.loop import (
    Device,
    Evaluation,
    evaluate,
    prepare_inputs,
    recalibrate_batchnorm,
)

if TYPE_CHECKING:
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import Source


def cpu_threads_for(scenario: Scenario) -> int:
    """Training threads on CPU: as configured, else the cores the DataLoader workers leave."""
    from harness.data.parallel import available_cpus

    configured = scenario.training.cpu_threads
    return configured or max(1, available_cpus() - scenario.pipeline.workers)


def set_cpu_threads(scenario: Scenario, device: Device) -> None:
    if not device.is_cuda:
        torch.set_num_threads(cpu_threads_for(scenario))


def build_model(
    scenario: Scenario, classes: int, device: Device, ranks: Ranks
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The scenario's U-Net on its device (channels-last on CUDA, DDP across ranks)."""
    from harness.train.unet import UNet

    model: torch.nn.Module = UNet(
        classes, scenario.training.model.width, scenario.training.model.depth
    ).to(device.torch_device)
    if device.is_cuda:
        # Module.to documents and accepts memory_format; torch's overloads leave it out.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Crops have one fixed size: let cuDNN pick its fastest kernels (in the blank warm-up
        # pass before the collectors start, not in measured steps).
        torch.backends.cudnn.benchmark = True
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.torch_device.index] if device.is_cuda else None
        model = DistributedDataParallel(model, device_ids=ids)
    training = scenario.training
    optimizer: torch.optim.Optimizer
    if training.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr)
    return model, optimizer


def blank_batch(scenario: Scenario) -> Batch:
    """A batch of zeros of the scenario's shape (no storage touched)."""
    crop, size = scenario.pipeline.crop, scenario.pipeline.batch_size
    return Batch.untimed(
        torch.zeros(size, 3, crop, crop, dtype=torch.uint8),
        torch.zeros(size, crop, crop, dtype=torch.uint8),
        0,
    )


def page_in(model: torch.nn.Module, scenario: Scenario, device: Device) -> None:
    """One forward and backward pass on a blank batch, before the collectors start.

    The first pass loads lazily imported modules and pages in the compute libraries' code
    (hundreds of MB of shared objects): reads from storage that have nothing to do with the
    dataset and would otherwise be counted as the run's I/O. Evaluation mode, and no optimiser
    step: neither the weights nor the BatchNorm statistics change."""
    images, masks = prepare_inputs(blank_batch(scenario), device)
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


def evaluate_model(
    model: torch.nn.Module,
    scenario: Scenario,
    source: Source,
    plan: SamplePlan,
    classes: int,
    device: Device,
    keep: list[Sample] | None = None,
) -> Evaluation | None:
    """Precise BatchNorm statistics from unseen training samples, then mIoU on held-out ones
    (read through the torch backend: evaluation is not part of the timed loop). ``keep``
    receives the first held-out samples as read (up to ``harness.train.samples.SAMPLES``), so
    that the run's thumbnails need not read them again. None when ``training.eval_samples``
    is 0."""
    from harness.pipeline.torch_loader import SegmentationSamples
    from harness.train.samples import SAMPLES

    count = scenario.training.eval_samples
    if count == 0:
        return None
    crop, size = scenario.pipeline.crop, scenario.pipeline.batch_size

    def batches(
        samples: SegmentationSamples, first: int, total: int, kept: list[Sample] | None = None
    ) -> Iterator[Batch]:
        for i in range(0, total, size):
            chunk = [samples[first + n] for n in range(i, min(i + size, total))]
            failed = next((s.fatal for s in chunk if s.fatal is not None), None)
            if failed is not None:  # never evaluate the zeros that stand in for it
                raise HarnessError(f"{failed[0]}: {failed[1]}")
            if kept is not None:
                kept.extend(chunk[: SAMPLES - len(kept)])
            yield Batch.collate(chunk)

    network = getattr(model, "module", model)
    # Training samples never drawn by the run (numbers far past its sequence) for precise BN.
    unseen = SegmentationSamples(source, plan, crop, "skip")
    recalibrate_batchnorm(network, batches(unseen, 2**41, max(4 * size, 32)), device)
    held_out = SegmentationSamples(source, plan, crop, "skip", held_out=True)
    return evaluate(network, batches(held_out, 0, count, keep), device, classes)
