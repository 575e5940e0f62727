"""Held-out samples kept as pictures: what the model saw and what it learnt (the study's
Figures 4-6), so that a report can show real pixels without the dataset.

At the end of a run, outside the measured window, the run's main process reads the first
:data:`SAMPLES` held-out samples of the sample plan (fixed by the seed: two runs of a scenario
keep the same crops) and writes them as small PNGs in ``thumbnails/``: the input, its true mask
and, where a model trained, the model's prediction. A collage run also keeps the image of its
first sample whole, downscaled, with its mask. The run's manifest lists them (``"thumbnails"``,
an additive field: older run folders have none).

Masks are palette PNGs: each pixel's value is its class number, and the palette
(:data:`CLASS_COLOURS`, the one the report draws with) makes the file viewable as it is.
Emulated runs have no model: input and truth only, and the entry says why. Nothing here may fail
a run: a sample that cannot be read makes the entry say so.

This module imports neither torch nor the pipeline at import time, so that the report can take
the class colours from here.
"""

from __future__ import annotations

import colorsys
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import one_line
from harness.files import DiskError, atomic_write

if TYPE_CHECKING:  # types only: the thumbnails import torch and the pipeline when they run
    import torch

    from harness.data.manifest import DatasetManifest
    from harness.pipeline.batch import Sample
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import Source
    from harness.train.loop import Device

FOLDER = "thumbnails"
SAMPLES = 4  # held-out samples kept per run
THUMBNAIL_PX = 128  # a kept crop's longest side at most (larger crops are downscaled)
OVERVIEW_PX = 320  # the kept collage image's longest side at most

# Class 0 is the background of generated data (dark, so that objects stand out); then the
# Okabe-Ito colours (colour-blind safe), then colours spread around the hue circle.
_FIRST_COLOURS = (
    "#303030",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#B0B0B0",
)


def class_colour(index: int) -> str:
    """The colour of class ``index`` in every picture the harness makes."""
    if index < len(_FIRST_COLOURS):
        return _FIRST_COLOURS[index]
    hue = (index * 0.618033988749895) % 1.0  # golden-ratio steps never repeat a hue closely
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.85 if index % 2 else 0.65)
    return f"#{round(red * 255):02X}{round(green * 255):02X}{round(blue * 255):02X}"


def palette(classes: int) -> np.ndarray:
    """(256, 3) uint8: the class colours, for every value a mask byte can hold."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        code = class_colour(index)
        colours[index] = [int(code[i : i + 2], 16) for i in (1, 3, 5)]
    return colours


def class_names(dataset_manifest: DatasetManifest) -> list[str]:
    """Names for a legend: what the dataset's labels are (generated, masks, a derivation rule)."""
    classes = int(dataset_manifest["classes"])
    labels = str(dataset_manifest.get("labels", ""))
    if labels.startswith("derived:"):
        rule = labels.removeprefix("derived:").replace("_", " ")
        return [f"{rule} {k}" for k in range(classes)]
    if labels == "exact":  # generated data: class 0 is the textured ground
        return ["background", *[f"class {k}" for k in range(1, classes)]]
    return [f"class {k}" for k in range(classes)]


def keep_held_out_samples(
    folder: Path,
    *,
    source: Source,
    plan: SamplePlan,
    crop: int,
    dataset_manifest: DatasetManifest,
    predict: Callable[[list[Sample]], np.ndarray] | None = None,
    no_prediction: str | None = None,
    read: list[Sample] | None = None,
) -> dict[str, Any]:
    """Write the thumbnails of the run in ``folder`` and return their manifest entry.

    ``predict`` maps a batch of held-out samples to class maps (N, H, W) uint8; without it,
    ``no_prediction`` says why there is none. ``read``: the samples, where the held-out
    evaluation read them already (a random video frame can cost a hundred decodes). A failure
    becomes ``{"unavailable": reason}``, except a file that cannot be written (``DiskError``):
    a full disk is the run's failure, said in one line."""
    started = time.perf_counter()
    try:
        entry = _keep(folder, source, plan, crop, dataset_manifest, predict, no_prediction, read)
    except DiskError:  # a picture that cannot be written (a full disk): the caller says so
        raise
    except Exception as exc:  # a picture must never cost the run its results
        return {"unavailable": f"{type(exc).__name__}: {one_line(exc, 200)}"}
    entry["seconds"] = round(time.perf_counter() - started, 3)
    return entry


def _keep(
    folder: Path,
    source: Source,
    plan: SamplePlan,
    crop: int,
    dataset_manifest: DatasetManifest,
    predict: Callable[[list[Sample]], np.ndarray] | None,
    no_prediction: str | None,
    read: list[Sample] | None,
) -> dict[str, Any]:
    from harness.pipeline.torch_loader import SegmentationSamples

    classes = int(dataset_manifest["classes"])
    held_out = SegmentationSamples(source, plan, crop, "skip", held_out=True)
    samples = list(read or [])[:SAMPLES]
    samples += [held_out[number] for number in range(len(samples), SAMPLES)]
    failed = [s.errors[-1] for s in samples if s.fatal is not None]
    if failed:
        path, message = failed[0]
        return {"unavailable": f"held-out sample unreadable: {path}: {message}"}
    predicted = None
    if predict is not None:
        predicted = predict(samples)
        no_prediction = None
    (folder / FOLDER).mkdir(exist_ok=True)
    colours = palette(classes)
    kept = []
    for number, sample in enumerate(samples):
        ref = plan.held_out(number)
        image = sample.image.permute(1, 2, 0).numpy()
        truth = sample.mask.numpy()
        stem = f"{FOLDER}/held-out-{number}"
        entry: dict[str, Any] = {
            "number": number,
            "file": ref.file,
            "frame": ref.frame,
            "top": ref.top,
            "left": ref.left,
            "where": _where(source, ref, crop),
            "input": _write_rgb(folder, f"{stem}-input.png", image, THUMBNAIL_PX),
            "truth": _write_mask(folder, f"{stem}-truth.png", truth, colours, THUMBNAIL_PX),
            "prediction": None,
            "pixel_accuracy": None,
        }
        if predicted is not None:
            guess = predicted[number]
            entry["prediction"] = _write_mask(
                folder, f"{stem}-prediction.png", guess, colours, THUMBNAIL_PX
            )
            entry["pixel_accuracy"] = round(float((guess == truth).mean()), 4)
        kept.append(entry)
    return {
        "classes": classes,
        "class_names": class_names(dataset_manifest),
        "crop": crop,
        "seed": plan.seed,
        "samples": kept,
        "no_prediction": no_prediction,
        "collage": _keep_collage(folder, source, plan, colours) if _is_collage(source) else None,
    }


def _where(source: Any, ref: Any, crop: int) -> str:
    """The file a sample was cut from, in words (dataset-relative; the video id in a cache)."""
    records = getattr(source, "records", None)
    if records is not None:
        name = str(records[ref.file]["path"])
    else:
        name = f"{source.videos[ref.file]['id']} (frame cache)"
    frame = f", frame {ref.frame}" if source.files[ref.file].frames > 1 else ""
    rows = f"rows {ref.top}-{ref.top + crop - 1}"
    return f"{name}{frame}, {rows}, columns {ref.left}-{ref.left + crop - 1}"


def _is_collage(source: Any) -> bool:
    from harness.pipeline.sources import CollageSource

    return isinstance(source, CollageSource)


def _keep_collage(folder: Path, source: Any, plan: Any, colours: np.ndarray) -> dict[str, Any]:
    """The image the first held-out sample was cut from, whole and downscaled, with its mask
    (the study's Figure 4): the held-out band is the image's bottom ``crop`` rows."""
    ref = plan.held_out(0)
    record = source.records[ref.file]
    info = source.files[ref.file]
    step = max(1, math.ceil(max(info.width, info.height) / OVERVIEW_PX))
    # Every (step/2)th row and column, then an antialiasing resize: the whole image is never in
    # memory, and on a memory-mapped file only those rows' pages are read.
    fine = max(1, step // 2)
    image = _strided(source.root / record["path"], fine)
    if "mask" in record:
        mask = _strided(source.root / record["mask"], fine)
    else:
        mask = source.derived_mask(image)
    size = (math.ceil(info.width / step), math.ceil(info.height / step))
    return {
        "file": ref.file,
        "where": str(record["path"]),
        "width": info.width,
        "height": info.height,
        "held_out_top": info.height - plan.crop,
        "image": _write_rgb(folder, f"{FOLDER}/collage.png", image, max(size)),
        "mask": _write_mask(folder, f"{FOLDER}/collage-mask.png", mask, colours, max(size)),
    }


def _strided(path: Path, step: int) -> np.ndarray:
    """Every ``step``-th row and column of an image or mask file (``.npy`` memory-mapped)."""
    if path.suffix == ".npy":
        array = np.load(path, mmap_mode="r")
        return np.ascontiguousarray(array[::step, ::step])
    from PIL import Image

    with Image.open(path) as picture:
        array = np.asarray(picture.convert("RGB") if picture.mode not in ("L", "P") else picture)
    return np.ascontiguousarray(array[::step, ::step])


def _scaled(height: int, width: int, longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _write_rgb(folder: Path, name: str, image: np.ndarray, longest: int) -> str:
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    size = _scaled(image.shape[0], image.shape[1], longest)
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.BOX)
    with atomic_write(folder / name) as handle:  # never a partial picture under its name
        picture.save(handle, format="PNG")
    return name


def _write_mask(
    folder: Path, name: str, mask: np.ndarray, colours: np.ndarray, longest: int
) -> str:
    """A palette PNG: pixel values are class numbers (nearest-neighbour when downscaled)."""
    from PIL import Image

    values = np.ascontiguousarray(mask, dtype=np.uint8)
    picture = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
    picture.putpalette(colours.tobytes())
    size = _scaled(mask.shape[0], mask.shape[1], longest)
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.NEAREST)
    with atomic_write(folder / name) as handle:  # never a partial picture under its name
        picture.save(handle, format="PNG")
    return name


def model_predictor(model: torch.nn.Module, device: Device) -> Callable[[list[Sample]], np.ndarray]:
    """``predict`` for :func:`keep_held_out_samples`: the trained network in evaluation mode
    (BatchNorm statistics as the held-out evaluation left them), with the run's precision."""
    import torch

    from harness.pipeline.batch import Batch
    from harness.train.loop import prepare_inputs

    network = getattr(model, "module", model)  # DDP's wrapped model: no collective needed

    @torch.no_grad()
    def predict(samples: list[Sample]) -> np.ndarray:
        images, _masks = prepare_inputs(Batch.collate(samples), device)
        network.eval()
        with torch.autocast(
            device.torch_device.type, dtype=torch.bfloat16, enabled=device.precision == "bf16"
        ):
            logits = network(images)
        network.train()
        return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()

    return predict
