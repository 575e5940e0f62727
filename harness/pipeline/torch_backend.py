"""The "torch" entry of the backend registry (``harness.registry.BACKENDS``): the PyTorch
DataLoader (``torch_loader``, imported when batches are asked for, so that checking a scenario,
``harness validate``, does not import torch: 0.8 s of its 1.4 s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.scenario import CollageGenerate, RecordsGenerate, Scenario

if TYPE_CHECKING:
    from harness.pipeline import BatchRequest
    from harness.pipeline.prefetch import BackgroundBatches
    from harness.pipeline.sources import Source


def unavailable() -> str | None:
    return None  # torch is one of the harness's own dependencies


def check_scenario(source: Source, use_cuda: bool) -> None:
    """The torch backend reads every dataset kind."""


def ignored_settings(scenario: Scenario) -> dict[str, str]:
    """The backend settings it does not act on for this scenario's data, each with why."""
    pipeline, dataset = scenario.pipeline, scenario.dataset
    ignored = {}
    if pipeline.workers == 0:
        ignored["prefetch_factor"] = "with workers 0 the training process reads each batch itself"
    decoded_video = dataset.kind == "video" and pipeline.mode != "cached"
    if dataset.kind != "video":
        ignored["decoder_threads"] = f"{dataset.kind} data has no video to decode"
    elif not decoded_video:
        ignored["decoder_threads"] = "the frame cache holds frames already decoded"
    if decoded_video:
        ignored["read_threads"] = "video is decoded from its file, not read whole"
    elif (
        isinstance(dataset.generate, RecordsGenerate)
        and dataset.generate.format == "tfrecord"
        and dataset.generate.records_per_file > 1
    ):
        ignored["read_threads"] = "TFRecord files of several records are read record by record"
    elif isinstance(dataset.generate, CollageGenerate) and dataset.generate.format == "npy":
        ignored["read_threads"] = "npy crops are read through a memory map, not as whole files"
    return ignored


def batches(request: BatchRequest) -> BackgroundBatches:
    """The DataLoader's batches, received by a thread of the training process (see prefetch)."""
    from harness.pipeline.torch_loader import loader_batches

    return loader_batches(request)
