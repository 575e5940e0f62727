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

Video decoded: ``fn.experimental.readers.video`` reads random sequences of
``pipeline.sequence_length`` frames (its shuffle buffer picks them) from each video's training
frames. It decodes on NVDEC (device ``gpu``) where there is a GPU; on a machine without one its
CPU decoder takes VP8, VP9 and MJPEG only, so an H.264/HEVC dataset is refused before any work.
(The older ``fn.readers.video`` is GPU-only; the experimental reader runs the same NVDEC decode and
is also testable on a CPU.) Frames come with their numbers, so the masks are drawn from the
tracks (or derived from the pixels) for exactly those frames; crops are cut in torch, at random
positions seeded per rank.
"""

from __future__ import annotations

import importlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import torch

from harness.errors import HarnessError, one_line
from harness.pipeline import BatchRequest
from harness.pipeline.batch import Batch
from harness.pipeline.plan import SamplePlan, SampleRef
from harness.pipeline.sources import (
    CachedVideoSource,
    CollageSource,
    DecodedVideoSource,
    Source,
)
from harness.scenario import Scenario


def unavailable() -> str | None:
    """Why DALI cannot be used here, or None."""
    try:
        importlib.import_module("nvidia.dali")
    except ImportError as exc:
        return f"NVIDIA DALI is not installed ({exc}); pip install nvidia-dali-cuda130"
    return None


def ignored_settings(scenario: Scenario) -> dict[str, str]:
    """The backend settings it does not act on for this scenario's data, each with why: DALI's
    own readers pick, read and prefetch the files."""
    ignored = {
        "shuffle": "DALI's readers always shuffle",
        "prefetch_factor": "DALI keeps its own prefetch queue",
        "decoder_threads": "DALI decodes with its pipeline threads (pipeline.workers)",
        "read_threads": "it reads through DALI's own readers",
        "on_corrupt": "DALI stops at a file it cannot read",
    }
    if scenario.dataset.kind != "video" or scenario.pipeline.mode == "cached":
        ignored["sequence_length"] = "DALI's file readers pick single pictures"
    return ignored


CPU_VIDEO_CODECS = ("vp8", "vp9", "mjpeg")  # what DALI's CPU video decoder takes


# Pillow modes of brought pictures that DALI's decoder reads as the torch backend does (RGB, EXIF
# orientation applied): measured against harness.data.pictures; it fails on 32-bit integer
# ("I") TIFFs. Masks: only 8-bit gray keeps its class ids (DALI expands palette masks into
# colours and rescales 16-bit and 1-bit ones).
DALI_IMAGE_MODES_REFUSED = ("I",)
DALI_MASK_MODES = ("L", "npy:1")
DALI_NPY_IMAGE_MODE = "npy:3"  # its numpy reader hands arrays over as they are: HxWx3 only


def check_scenario(source: Source, use_cuda: bool) -> None:
    """Refuse, before any work, what this backend cannot do; a file it cannot decode is named."""
    if isinstance(source, CollageSource):
        _check_pictures(source)
    if not isinstance(source, DecodedVideoSource):
        return
    if any("mask" in record for record in source.records):
        raise HarnessError(
            "backend dali reads video masks from track tables or derives them from pixels; this "
            "dataset has mask videos: use pipeline.backend torch"
        )
    from harness.pipeline.codecs import refuse_awkward_video

    refuse_awkward_video(source, "dali")
    if use_cuda:
        from harness.pipeline.codecs import check_nvdec_limits

        check_nvdec_limits(source)  # DALI's GPU reader decodes on NVDEC: the same limits
        return
    for record in source.records:
        codec = str(record.get("codec", "")).lower()
        if codec not in CPU_VIDEO_CODECS:
            raise HarnessError(
                f"{source.root / record['path']}: backend dali decodes {codec or 'this'} video on "
                f"the GPU only and this machine has none (its CPU decoder takes "
                f"{', '.join(CPU_VIDEO_CODECS)}); use pipeline.backend torch"
            )


def _check_pictures(source: CollageSource) -> None:
    for record in source.records:
        mode = str(record.get("mode", ""))
        if mode in DALI_IMAGE_MODES_REFUSED:
            raise HarnessError(
                f"{source.root / record['path']}: backend dali cannot decode {mode} "
                "(32-bit integer) images; use pipeline.backend torch"
            )
        if mode.startswith("npy") and mode != DALI_NPY_IMAGE_MODE:
            raise HarnessError(
                f"{source.root / record['path']}: backend dali reads npy images of 3 channels "
                f"only, this one has {mode.removeprefix('npy:')}; use pipeline.backend torch"
            )
        mask_mode = record.get("mask_mode", "L")
        if "mask" in record and mask_mode not in DALI_MASK_MODES:
            raise HarnessError(
                f"{source.root / record['mask']}: backend dali reads masks of mode L (8-bit gray) "
                f"only and would change the class ids of this mode {mask_mode} mask; use "
                "pipeline.backend torch or save the masks as 8-bit gray"
            )


def _epochs(iterator: Any) -> Iterator[Any]:
    """Batches across epochs: DALI's iterator stops at each epoch's end and, with auto_reset,
    starts the next; iterating it anew each time would reset it (and warn) instead. DALI's own
    failures (a corrupt file) become one line."""
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            continue
        except RuntimeError as exc:
            raise HarnessError(dali_error(exc)) from None


def dali_error(exc: BaseException) -> str:
    """One line for DALI's multi-line error: the operator that failed and what it met. DALI does
    not say which file it was reading."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    operator = next((line.rstrip(",") for line in lines if line.startswith("Error in")), None)
    detail = None
    if "encountered:" in lines:
        after = lines[lines.index("encountered:") + 1 :]
        detail = next((line for line in after if "pipeline object" not in line), None)
    parts = [p for p in (operator, detail) if p] or lines[:1]
    return (
        f"backend dali: {type(exc).__name__}: {one_line(': '.join(parts), 300)} (DALI does not "
        "name the file; pipeline.backend torch does)"
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
            first_held_out = plan.train_range(info)[1]
            for index in range(first_held_out):
                frame, mask = source._paths(file, index)
                images.append(str(frame))
                masks.append(str(mask))
    else:
        raise HarnessError(f"backend dali cannot read {type(source).__name__}")
    return images, masks, Path(images[0]).suffix, Path(masks[0]).suffix


class _ReaderOptions(TypedDict):
    """What the image and mask readers share, so that their n-th files pair up."""

    random_shuffle: bool
    seed: int
    shard_id: int
    num_shards: int


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
) -> Iterator[Batch]:
    """Batches in the training loop's format, from a DALI pipeline fed by DALIGenericIterator."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    images, masks, image_suffix, mask_suffix = _training_files(source, plan)
    classes = source.classes if isinstance(source, CollageSource) else None
    heights = {info.height for info in source.files}
    widths = {info.width for info in source.files}
    # Crop corners, relative to the room left by the crop; images keep their bottom band out.
    height, width = min(heights), min(widths)
    is_image = isinstance(source, CollageSource)
    top_room = (height - 2 * crop) / (height - crop) if is_image else 1.0
    decoder_device = "mixed" if device_index is not None else "cpu"
    reader: _ReaderOptions = {
        "random_shuffle": True,
        "seed": seed,
        "shard_id": rank,
        "num_shards": world,
    }

    def read(files: list[str], suffix: str, name: str, y: Any, x: Any, gray: bool) -> Any:
        if suffix == ".npy":
            start = fn.stack(y * (height - crop), x * (width - crop))
            return fn.readers.numpy(
                files=files,
                name=name,
                roi_start=fn.cast(start, dtype=types.DALIDataType.INT32),
                roi_shape=[crop, crop],
                roi_axes=[0, 1],
                **reader,
            )
        encoded, _label = fn.readers.file(files=files, name=name, **reader)
        decoded = fn.decoders.image(
            encoded,
            device=decoder_device,
            output_type=types.DALIImageType.GRAY if gray else types.DALIImageType.RGB,
        )
        return fn.crop(decoded, crop=(crop, crop), crop_pos_y=y, crop_pos_x=x)

    @pipeline_def(
        batch_size=batch_size,
        num_threads=max(1, workers),
        device_id=device_index,  # type: ignore[arg-type]  # None: CPU only; the hint says int
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
    for outputs in itertools.islice(_epochs(iterator), steps):  # steps None: no end
        yield _training_batch(outputs[0], classes)


def _training_batch(outputs: dict[str, torch.Tensor], classes: int | None) -> Batch:
    """DALI's image and mask tensors as the training loop's batch (NCHW images, class-id masks),
    a mask value that is no class refused."""
    image = outputs["image"].permute(0, 3, 1, 2)  # NHWC -> NCHW, as the torch backend
    mask = outputs["mask"]
    if mask.dim() == 4:
        mask = mask[..., 0]
    if classes is not None and int(mask.max()) >= classes:
        raise HarnessError(
            f"backend dali: a mask in this batch holds {int(mask.max())}, not a class id "
            f"(dataset.classes is {classes}); DALI does not say which file: the torch backend "
            "names it"
        )
    return Batch.untimed(image, mask, time.monotonic_ns())


def build_dali_video_batches(
    source: DecodedVideoSource,
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
    work_dir: Path,
) -> Iterator[Batch]:
    """Batches of frames from random sequences decoded by DALI's video reader."""
    import numpy as np
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    length = plan.sequence_length
    # One line per video: path, label (its index), first and last-plus-one training frame.
    file_list = work_dir / f"dali-videos-rank{rank}.txt"
    file_list.write_text(
        "".join(
            f"{source.root / record['path']} {index} 0 {plan.train_range(info)[1]}\n"
            for index, (record, info) in enumerate(zip(source.records, source.files, strict=True))
        )
    )
    sequences = -(-batch_size // length)  # enough sequences for a batch; extra frames dropped
    pipeline = _video_pipeline(
        file_list, length, sequences, workers, seed, rank, world, device_index
    )
    iterator = DALIGenericIterator(
        pipeline,
        ["video", "label", "frame"],
        reader_name="video",
        auto_reset=True,
        last_batch_policy=LastBatchPolicy.FILL,
    )
    crops = np.random.default_rng([seed, rank, 0xDA11])
    tracks: dict[int, Any] = {}
    for outputs in itertools.islice(_epochs(iterator), steps):  # steps None: no end
        batch = outputs[0]
        frames = batch["video"].flatten(0, 1)[:batch_size]  # (N, H, W, C)
        files = batch["label"].reshape(-1).cpu().repeat_interleave(length)[:batch_size]
        numbers = batch["frame"].reshape(-1).cpu()[:batch_size]
        images, masks, refs = [], [], []
        for frame, file, number in zip(frames, files.tolist(), numbers.tolist(), strict=True):
            info = source.files[file]
            top = int(crops.integers(info.height - crop + 1))
            left = int(crops.integers(info.width - crop + 1))
            ref = SampleRef(file, number, top, left)
            refs.append(ref)
            image = frame[top : top + crop, left : left + crop]
            images.append(image.permute(2, 0, 1))
            masks.append(_video_mask(source, tracks, ref, crop, image))
        made = Batch.untimed(
            torch.stack(images), torch.stack(masks).to(frames.device), time.monotonic_ns()
        )
        made.refs = refs  # which frame and crop each sample is (tests check them)
        yield made


def _video_pipeline(
    file_list: Path,
    length: int,
    sequences: int,
    workers: int,
    seed: int,
    rank: int,
    world: int,
    device_index: int | None,
) -> Any:
    """DALI's pipeline reading random sequences of ``length`` frames of the videos listed in
    ``file_list`` (``sequences`` of them a batch), with each frame's video and number."""
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(
        batch_size=sequences,
        num_threads=max(1, workers),
        device_id=device_index,  # type: ignore[arg-type]  # None: CPU only; the hint says int
        seed=seed + 7919 * rank,
    )
    def pipeline() -> tuple[Any, Any, Any]:
        # three outputs (label and frame numbers asked for); the hint's union cannot say so
        video, label, frame = fn.experimental.readers.video(  # type: ignore[misc]
            file_list=str(file_list),
            file_list_format="frames",
            file_list_include_end=False,
            sequence_length=length,
            random_shuffle=True,
            initial_fill=256,
            seed=seed,
            shard_id=rank,
            num_shards=world,
            enable_frame_num="sequence",
            device="gpu" if device_index is not None else "cpu",
            name="video",
        )
        return video, label, frame

    return pipeline()


def _video_mask(
    source: DecodedVideoSource,
    tracks: dict[int, Any],
    ref: SampleRef,
    crop: int,
    image: torch.Tensor,
) -> torch.Tensor:
    """The class mask under a crop (``image``, HxWxC) of frame ``ref.frame`` of video
    ``ref.file``: drawn from the video's track table, or derived from the crop's pixels."""
    from harness.data.labels import derive_mask
    from harness.data.tracks import Tracks

    record = source.records[ref.file]
    if "tracks" in record:
        if ref.file not in tracks:
            tracks[ref.file] = Tracks.load(source.root / record["tracks"])
        whole = tracks[ref.file].mask(ref.frame)
        return torch.from_numpy(whole[ref.top : ref.top + crop, ref.left : ref.left + crop])
    rule = source.labels.removeprefix("derived:")
    return torch.from_numpy(derive_mask(image.cpu().numpy(), rule, source.classes))


def batches(request: BatchRequest) -> Iterator[Batch]:
    """The registry's entry: DALI's video reader for decoded video, else its image readers."""
    if isinstance(request.source, DecodedVideoSource):
        request.work_dir.mkdir(parents=True, exist_ok=True)  # ranks other than 0 may lack it
        return build_dali_video_batches(
            request.source,
            request.plan,
            batch_size=request.batch_size,
            crop=request.crop,
            workers=request.workers,
            seed=request.seed,
            rank=request.rank,
            world=request.world,
            steps=request.steps,
            device_index=request.device_index,
            work_dir=request.work_dir,
        )
    return build_dali_batches(
        request.source,
        request.plan,
        batch_size=request.batch_size,
        crop=request.crop,
        workers=request.workers,
        seed=request.seed,
        rank=request.rank,
        world=request.world,
        steps=request.steps,
        device_index=request.device_index,
    )
