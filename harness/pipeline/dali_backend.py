"""The NVIDIA DALI backend for the image collage and the frame cache.

Images and masks go through two readers with the same seed, shuffling and sharding, so that the
n-th image and the n-th mask are always the same file, and share one random crop position:

* ``npy``: ``fn.readers.numpy`` with a region of interest: only the crop is read from storage;
* JPEG/PNG: ``fn.readers.file`` -> ``fn.decoders.image`` (device ``mixed`` on a GPU, ``cpu`` on a
  machine without one, where the pipeline runs with ``device_id=None``) -> ``fn.crop``.

DALI picks the files (its reader's shuffling, sharded by rank) and the crop positions (its random
generator), not the torch backend's ``SamplePlan``; both keep clear of the held-out data (the
bottom crop band of every image, the last eighth of every video). DALI does not time or count
single samples, so fetch latency and the bytes cross-check are reported as not available.

Video decoded by DALI needs its GPU decoder (``fn.readers.video``): not part of this version.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.pipeline.sources import (
    CachedVideoSource,
    CollageSource,
    DecodedVideoSource,
    SamplePlan,
    Source,
)

SAMPLE_NOT_TIMED = -1  # latency and bytes of samples this backend cannot time or count one by one


def unavailable() -> str | None:
    """Why DALI cannot be used here, or None."""
    try:
        importlib.import_module("nvidia.dali")
    except ImportError as exc:
        return f"NVIDIA DALI is not installed ({exc}); pip install nvidia-dali-cuda130"
    return None


def check_scenario(source: Source, use_cuda: bool) -> None:
    """Refuse, before any work, what this backend cannot do."""
    if isinstance(source, DecodedVideoSource):
        reason = (
            "DALI decodes H.264/HEVC video on the GPU only and this machine has none"
            if not use_cuda
            else "DALI's GPU video reader (fn.readers.video) is not part of this version yet"
        )
        raise HarnessError(
            f"backend dali not available for video decoded: {reason}; use pipeline.backend torch"
        )


def _training_files(source: Source, plan: SamplePlan) -> tuple[list[str], list[str], str, str]:
    """(image files, mask files, image format, mask format) of the training data."""
    if isinstance(source, CollageSource):
        if any("mask" not in record for record in source.records):
            raise HarnessError("backend dali needs masks: datasets with a label_rule use torch")
        images = [str(source.root / r["path"]) for r in source.records]
        masks = [str(source.root / r["mask"]) for r in source.records]
    elif isinstance(source, CachedVideoSource):
        images, masks = [], []
        for file, info in enumerate(source.files):
            first_held_out = plan._train_range(info)[1]
            for index in range(first_held_out):
                frame, mask = source._paths(file, index)
                images.append(str(frame))
                masks.append(str(mask))
    else:
        raise HarnessError(f"backend dali cannot read {type(source).__name__}")
    return images, masks, Path(images[0]).suffix, Path(masks[0]).suffix


def build_dali_batches(
    source: Source,
    plan: SamplePlan,
    *,
    batch_size: int,
    crop: int,
    workers: int,
    seed: int,
    rank: int,
    world: int,
    steps: int | None,
    device_index: int | None,
) -> Iterator[dict[str, Any]]:
    """Batches in the training loop's format, from a DALI pipeline fed by DALIGenericIterator."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    images, masks, image_suffix, mask_suffix = _training_files(source, plan)
    heights = {info.height for info in source.files}
    widths = {info.width for info in source.files}
    # Crop corners, relative to the room left by the crop; images keep their bottom band out.
    height, width = min(heights), min(widths)
    is_image = isinstance(source, CollageSource)
    top_room = (height - 2 * crop) / (height - crop) if is_image else 1.0
    decoder_device = "mixed" if device_index is not None else "cpu"
    reader = {"random_shuffle": True, "seed": seed, "shard_id": rank, "num_shards": world}

    def read(files: list[str], suffix: str, name: str, y: Any, x: Any, gray: bool) -> Any:
        if suffix == ".npy":
            start = fn.stack(y * (height - crop), x * (width - crop))
            return fn.readers.numpy(
                files=files,
                name=name,
                roi_start=fn.cast(start, dtype=types.INT32),
                roi_shape=[crop, crop],
                roi_axes=[0, 1],
                **reader,
            )
        encoded, _label = fn.readers.file(files=files, name=name, **reader)
        decoded = fn.decoders.image(
            encoded, device=decoder_device, output_type=types.GRAY if gray else types.RGB
        )
        return fn.crop(decoded, crop=(crop, crop), crop_pos_y=y, crop_pos_x=x)

    @pipeline_def(
        batch_size=batch_size,
        num_threads=max(1, workers),
        device_id=device_index,
        seed=seed + 7919 * rank,
    )
    def pipeline() -> tuple[Any, Any]:
        y = fn.random.uniform(range=[0.0, max(top_room, 0.0)])
        x = fn.random.uniform(range=[0.0, 1.0])
        return (
            read(images, image_suffix, "images", y, x, gray=False),
            read(masks, mask_suffix, "masks", y, x, gray=True),
        )

    # FILL: an epoch smaller than a batch (a few large images) still gives full batches.
    iterator = DALIGenericIterator(
        pipeline(),
        ["image", "mask"],
        reader_name="images",
        auto_reset=True,
        last_batch_policy=LastBatchPolicy.FILL,
    )
    produced = 0
    while steps is None or produced < steps:
        for outputs in iterator:
            batch = outputs[0]
            image = batch["image"].permute(0, 3, 1, 2)  # NHWC -> NCHW, as the torch backend
            mask = batch["mask"]
            if mask.dim() == 4:
                mask = mask[..., 0]
            count = image.shape[0]
            now = time.monotonic_ns()
            yield {
                "image": image,
                "mask": mask,
                "latency_ns": torch.full((count,), SAMPLE_NOT_TIMED, dtype=torch.int64),
                "end_ns": torch.full((count,), now, dtype=torch.int64),
                "requested": torch.full((count,), SAMPLE_NOT_TIMED, dtype=torch.int64),
                "first_time": torch.full((count,), SAMPLE_NOT_TIMED, dtype=torch.int64),
                "errors": [],
                "fatal": None,
            }
            produced += 1
            if steps is not None and produced >= steps:
                return
