"""The image collage: large RGB images of textured objects with exact per-pixel class masks.

Layout of a collage dataset folder::

    dataset.json
    images/img_00000.npy | .png | .jpg     one RGB image, uint8 HxWx3
    masks/img_00000.npy  | .png            its class mask, uint8 HxW (always lossless)

``npy`` files are plain NumPy arrays (C order) so that a crop can be read through a memory map,
touching only the rows it needs, as a storage benchmark of partial reads requires.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import render
from harness.data.images import SUFFIX, write_image
from harness.scenario import CollageGenerate

GENERATOR_VERSION = 1


def image_name(index: int, image_format: str) -> str:
    return f"images/img_{index:05d}{SUFFIX[image_format]}"


def mask_name(index: int, image_format: str) -> str:
    return f"masks/img_{index:05d}{'.npy' if image_format == 'npy' else '.png'}"


def outputs(params: CollageGenerate, index: int) -> tuple[str, ...]:
    return image_name(index, params.format), mask_name(index, params.format)


def job_count(params: CollageGenerate) -> int:
    return params.images


@functools.lru_cache(maxsize=1)
def _bank(seed: int, classes: int, side: int) -> np.ndarray:
    """Packed textures ``[classes, variants, side, side]`` uint32, tiled once up to the largest
    object so that each object's texture is a view, not a fresh copy."""
    tiles = render.pack(render.texture_bank(seed, classes))
    reps = -(-side // render.TILE)
    return np.tile(tiles, (1, 1, reps, reps))[:, :, :side, :side]


@functools.lru_cache(maxsize=1)
def _workspace(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canvas, mask and RGB buffers reused from image to image: fresh 100 MB allocations would
    cost more in page faults than the drawing itself."""
    return (
        np.empty((height, width), dtype=np.uint32),
        np.empty((height, width), dtype=np.uint8),
        np.empty((height, width, 3), dtype=np.uint8),
    )


def render_image(params: CollageGenerate, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` and its mask; the same parameters always give the same bytes.

    The arrays are reused by the next call in this process: copy them to keep them."""
    rng = np.random.default_rng([params.seed, index, 0xC0])
    height, width = params.height, params.width
    side = min(height, width)
    low, high = max(4, side // 24), max(5, side // 5)
    bank = _bank(params.seed, params.classes, max(high, render.TILE))
    image, mask, rgb = _workspace(height, width)
    background = bank[0, rng.integers(bank.shape[1]), : render.TILE, : render.TILE]
    render.fill_tiled(image, background, *(int(v) for v in rng.integers(render.TILE, size=2)))
    mask.fill(0)
    for _ in range(params.objects_per_image):
        cls = int(rng.integers(1, params.classes))
        obj_h, obj_w = (int(v) for v in rng.integers(low, high, size=2))
        top = int(rng.integers(-obj_h // 2, height - obj_h // 2))
        left = int(rng.integers(-obj_w // 2, width - obj_w // 2))
        shape = int(rng.integers(len(render.SHAPES)))
        texture = bank[cls, rng.integers(bank.shape[1]), :obj_h, :obj_w]
        outline = render.shape_mask(shape, obj_h, obj_w)
        render.paste(image, mask, outline, top, left, texture, cls)
    return render.unpack(image, out=rgb), mask


def make(root: str, params: CollageGenerate, index: int, threads: int = 1) -> None:
    """Render and write image ``index`` and its mask (each file atomically)."""
    image, mask = render_image(params, index)
    image_path, mask_path = (Path(root) / name for name in outputs(params, index))
    write_image(mask_path, mask, "npy" if params.format == "npy" else "png")
    write_image(image_path, image, params.format, quality=params.jpeg_quality)


def describe(root: Path, params: CollageGenerate) -> list[dict[str, Any]]:
    """The manifest records of every image, from what is on disk."""
    records = []
    for index in range(params.images):
        image, mask = outputs(params, index)
        records.append(
            {
                "path": image,
                "mask": mask,
                "bytes": os.path.getsize(root / image),
                "mask_bytes": os.path.getsize(root / mask),
                "width": params.width,
                "height": params.height,
            }
        )
    return records
