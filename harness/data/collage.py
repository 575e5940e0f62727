"""The image collage: large RGB images of textured objects with exact per-pixel class masks.

Layout of a collage dataset folder::

    dataset.json
    images/img_00000.npy | .png | .jpg     one RGB image, uint8 HxWx3
    masks/img_00000.npy  | .png            its class mask, uint8 HxW (always lossless)

``npy`` files are plain NumPy arrays (C order) so that a crop can be read through a memory map,
touching only the rows it needs, as a storage benchmark of partial reads requires.

Two ways to draw the images (``generate.unique``):

- ``pool`` (the default): a few full-size canvases are rendered once, with most of the objects;
  each image is one of them shifted circularly by an offset no other image of that canvas gets,
  plus a tenth of its objects drawn fresh. Copying is far cheaper than drawing, so writing, not
  rendering, bounds generation, and no two images show the same crop at the same position.
- ``full``: every object of every image drawn afresh (today's images, bit for bit).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from harness.data import render
from harness.data.images import SUFFIX, write_image
from harness.data.manifest import FileRecord
from harness.scenario import CollageGenerate

GENERATOR_VERSION = 1


def image_name(index: int, image_format: str) -> str:
    return f"images/img_{index:05d}{SUFFIX[image_format]}"


def mask_name(index: int, image_format: str) -> str:
    return f"masks/img_{index:05d}{'.npy' if image_format == 'npy' else '.png'}"


def outputs(params: CollageGenerate, index: int) -> tuple[str, ...]:
    return image_name(index, params.format), mask_name(index, params.format)


def job_count(params: CollageGenerate) -> int:
    assert params.images is not None, "the image count is resolved before generation"
    return params.images


def unit_bytes(params: CollageGenerate) -> tuple[float, bool]:
    """Bytes one image and its mask take on disk, and whether that is exact (raw ``npy``);
    compressed formats are measured on one rendered image."""
    if params.format == "npy":
        header = 128  # NumPy format 1.0 header, padded
        return float(params.width * params.height * 4 + 2 * header), True
    import io

    from PIL import Image

    image, mask = render_image(params, 0)
    sizes = []
    for array, kind in ((image, params.format), (mask, "png")):
        buffer = io.BytesIO()
        save = {"compress_level": 1} if kind == "png" else {"quality": params.jpeg_quality}
        Image.fromarray(array).save(buffer, format="PNG" if kind == "png" else "JPEG", **save)
        sizes.append(buffer.tell())
    return float(sum(sizes)), False


POOL_BYTES = 256 * 2**20  # memory the pool canvases may take (shared by forked workers)
FRESH_SHARE = 10  # 1 in FRESH_SHARE objects of a pooled image is drawn for that image alone


def pool_count(params: CollageGenerate) -> int:
    per_canvas = params.width * params.height * 4
    return max(1, min(8, job_count(params), POOL_BYTES // per_canvas))


def prepare(params: CollageGenerate) -> None:
    """Render the pool in the parent, so that forked workers share it rather than redraw it."""
    if params.unique == "pool":
        _pool(params)


@functools.lru_cache(maxsize=1)
def _pool(params: CollageGenerate) -> tuple[np.ndarray, np.ndarray]:
    count = pool_count(params)
    objects = params.objects_per_image - fresh_objects(params)
    images = np.empty((count, params.height, params.width, 3), dtype=np.uint8)
    masks = np.empty((count, params.height, params.width), dtype=np.uint8)
    for k in range(count):
        rng = np.random.default_rng([params.seed, k, 0xB0])
        images[k], masks[k] = _draw(params, rng, objects)
    return images, masks


def fresh_objects(params: CollageGenerate) -> int:
    return max(1, params.objects_per_image // FRESH_SHARE)


def pool_offset(params: CollageGenerate, index: int) -> tuple[int, int, int]:
    """(canvas, dy, dx) of image ``index``: images of one canvas take distinct offsets (a
    bijection of their rank onto the canvas's pixels), so no two show a crop at the same place."""
    count = pool_count(params)
    canvas, rank = index % count, index // count
    pixels = params.width * params.height
    stride = 0x9E3779B1 % pixels or 1  # golden-ratio stride, made coprime with the pixel count
    while math.gcd(stride, pixels) != 1:
        stride += 1
    spot = (rank * stride + params.seed) % pixels
    return canvas, spot // params.width, spot % params.width


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
    if params.unique == "pool":
        return _pooled_image(params, index)
    rng = np.random.default_rng([params.seed, index, 0xC0])
    return _draw(params, rng, params.objects_per_image)


def _pooled_image(params: CollageGenerate, index: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = _pool(params)
    canvas, dy, dx = pool_offset(params, index)
    _canvas, mask, rgb = _workspace(params.height, params.width)
    _roll_into(rgb, images[canvas], dy, dx)
    _roll_into(mask, masks[canvas], dy, dx)
    rng = np.random.default_rng([params.seed, index, 0xF5])
    bank = _object_bank(params)
    for cls, texture, outline, top, left in _objects(params, rng, fresh_objects(params), bank):
        _paste_rgb(rgb, outline, top, left, texture)
        render.paste(None, mask, outline, top, left, None, cls)
    return rgb, mask


def _paste_rgb(
    rgb: np.ndarray, outline: np.ndarray, top: int, left: int, texture: np.ndarray
) -> None:
    """``render.paste`` for an RGB image (the packed texture's RGB bytes inside the outline)."""
    height, width = outline.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, rgb.shape[0]), min(left + width, rgb.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    inside = outline[y0 - top : y1 - top, x0 - left : x1 - left]
    source = render.rgba_view(texture)[y0 - top : y1 - top, x0 - left : x1 - left, :3]
    np.copyto(rgb[y0:y1, x0:x1], source, where=inside[..., None])


def _roll_into(out: np.ndarray, source: np.ndarray, dy: int, dx: int) -> None:
    """``out`` = ``source`` shifted circularly up by ``dy`` rows and left by ``dx`` columns."""
    height, width = source.shape[:2]
    out[: height - dy, : width - dx] = source[dy:, dx:]
    out[: height - dy, width - dx :] = source[dy:, :dx]
    out[height - dy :, : width - dx] = source[:dy, dx:]
    out[height - dy :, width - dx :] = source[:dy, :dx]


def _object_bank(params: CollageGenerate) -> np.ndarray:
    side = min(params.height, params.width)
    return _bank(params.seed, params.classes, max(max(5, side // 5), render.TILE))


def _objects(
    params: CollageGenerate, rng: np.random.Generator, count: int, bank: np.ndarray
) -> list[tuple[int, np.ndarray, np.ndarray, int, int]]:
    """(class, packed texture, outline, top, left) of ``count`` objects drawn from ``rng``."""
    height, width = params.height, params.width
    side = min(height, width)
    low, high = max(4, side // 24), max(5, side // 5)
    found = []
    for _ in range(count):
        cls = int(rng.integers(1, params.classes))
        obj_h, obj_w = (int(v) for v in rng.integers(low, high, size=2))
        top = int(rng.integers(-obj_h // 2, height - obj_h // 2))
        left = int(rng.integers(-obj_w // 2, width - obj_w // 2))
        shape = int(rng.integers(len(render.SHAPES)))
        texture = bank[cls, rng.integers(bank.shape[1]), :obj_h, :obj_w]
        found.append((cls, texture, render.shape_mask(shape, obj_h, obj_w), top, left))
    return found


def _draw(
    params: CollageGenerate, rng: np.random.Generator, objects: int
) -> tuple[np.ndarray, np.ndarray]:
    """A freshly drawn image and mask with ``objects`` objects (in the reused workspace)."""
    bank = _object_bank(params)
    image, mask, rgb = _workspace(params.height, params.width)
    background = bank[0, rng.integers(bank.shape[1]), : render.TILE, : render.TILE]
    render.fill_tiled(image, background, *(int(v) for v in rng.integers(render.TILE, size=2)))
    mask.fill(0)
    for cls, texture, outline, top, left in _objects(params, rng, objects, bank):
        render.paste(image, mask, outline, top, left, texture, cls)
    return render.unpack(image, out=rgb), mask


def make(root: str, params: CollageGenerate, index: int, threads: int = 1) -> None:
    """Render and write image ``index`` and its mask (each file atomically)."""
    image, mask = render_image(params, index)
    image_path, mask_path = (Path(root) / name for name in outputs(params, index))
    write_image(mask_path, mask, "npy" if params.format == "npy" else "png")
    write_image(image_path, image, params.format, quality=params.jpeg_quality)


def describe(root: Path, params: CollageGenerate) -> list[FileRecord]:
    """The manifest records of every image, from what is on disk."""
    records: list[FileRecord] = []
    for index in range(job_count(params)):
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
