"""Drawing primitives shared by the collage and video generators.

Objects are textured shapes of one class each, pasted onto a textured background. Shape outlines
are computed with integer arithmetic only, so a mask drawn from the same parameters is bit-exact on
every machine; textures only colour the pixels and never decide which class a pixel belongs to.
Textures are periodic tiles so that any area is filled by plain array tiling, and pixels are drawn
on "packed" canvases (one uint32 per RGBX pixel): a masked copy of 2-D uint32 arrays runs ~20x
faster than the same copy on HxWx3 bytes, and the generators must write raw data near the disk's
speed.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

TILE = 256  # texture tile side, in pixels
SHAPES = ("rectangle", "ellipse", "diamond", "triangle")


def texture_bank(seed: int, classes: int, variants: int = 4) -> np.ndarray:
    """Periodic RGB texture tiles, ``[classes, variants, TILE, TILE, 3]`` uint8.

    Class 0 is the background (muted, noisy ground); every other class has its own hue and its own
    pattern family (stripes, checks or spots) so that a small network can learn to tell them apart.
    """
    rng = np.random.default_rng([seed, 0x7E7])
    bank = np.empty((classes, variants, TILE, TILE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE
    for cls in range(classes):
        for variant in range(variants):
            noise = _periodic_noise(rng, TILE)
            if cls == 0:
                base = colorsys.hsv_to_rgb(
                    0.08 + 0.25 * rng.random(),
                    0.15 + 0.15 * rng.random(),
                    0.35 + 0.2 * rng.random(),
                )
                # Coarse blotches plus fine grain: real ground has detail at every scale.
                grain = _periodic_noise(rng, TILE, falloff=1.0)
                shade = 0.5 + 0.3 * noise + 0.2 * grain
            else:
                hue = (cls - 1) / max(1, classes - 1) * 0.85
                base = colorsys.hsv_to_rgb(hue, 0.75, 0.6 + 0.3 * rng.random())
                # Whole periods per tile keep the texture seamless when tiled.
                period = 2 + (cls * 3 + variant) % 7
                angle = (cls * 47 + variant * 11) % 180 * np.pi / 180
                family = cls % 3
                if family == 0:  # stripes
                    phase = (np.cos(angle) * xx + np.sin(angle) * yy) * period
                    pattern = 0.5 + 0.5 * np.sin(2 * np.pi * np.round(phase * 4) / 4)
                elif family == 1:  # checks
                    pattern = ((np.floor(xx * period) + np.floor(yy * period)) % 2).astype(
                        np.float32
                    )
                else:  # spots
                    pattern = (
                        np.sin(2 * np.pi * xx * period) * np.sin(2 * np.pi * yy * period) > 0.3
                    ).astype(np.float32)
                shade = 0.55 + 0.3 * pattern + 0.15 * noise
            tile = np.asarray(base, dtype=np.float32)[None, None, :] * shade[:, :, None] * 255
            bank[cls, variant] = np.clip(tile, 0, 255).astype(np.uint8)
    return bank


def pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> uint32 [...], bytes R, G, B, 255 in memory (little-endian order)."""
    rgba = np.empty((*rgb.shape[:-1], 4), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    return rgba.view("<u4")[..., 0]


def rgba_view(canvas: np.ndarray) -> np.ndarray:
    """A packed canvas seen as uint8 HxWx4 RGBA, without copying (what video encoders take)."""
    return canvas.view(np.uint8).reshape((*canvas.shape, 4))


def unpack(canvas: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A packed canvas as a contiguous uint8 HxWx3 RGB array.

    Copied one channel at a time: NumPy moves single bytes at a fixed stride several times
    faster than 3-byte groups."""
    rgba = rgba_view(canvas)
    rgb = np.empty((*canvas.shape, 3), dtype=np.uint8) if out is None else out
    for channel in range(3):
        rgb[..., channel] = rgba[..., channel]
    return rgb


def tiled(tile: np.ndarray, height: int, width: int, y0: int = 0, x0: int = 0) -> np.ndarray:
    """An ``height x width`` view-or-copy of the periodic ``tile`` starting at offset (y0, x0).

    For whole images, ``fill_tiled`` writes into a canvas without the intermediate copies."""
    size_y, size_x = tile.shape[:2]
    y0 %= size_y
    x0 %= size_x
    reps_y = -(-(y0 + height) // size_y)
    reps_x = -(-(x0 + width) // size_x)
    if reps_y == 1 and reps_x == 1:
        return tile[y0 : y0 + height, x0 : x0 + width]
    reps = (reps_y, reps_x) + (1,) * (tile.ndim - 2)
    return np.tile(tile, reps)[y0 : y0 + height, x0 : x0 + width]


def fill_tiled(canvas: np.ndarray, tile: np.ndarray, y0: int = 0, x0: int = 0) -> None:
    """Fill ``canvas`` with the periodic ``tile`` shifted by (y0, x0), block by block."""
    height, width = canvas.shape[:2]
    band = tiled(tile, tile.shape[0], width, y0, x0)  # one tile-high band of the full width
    for top in range(0, height, tile.shape[0]):
        rows = min(tile.shape[0], height - top)
        canvas[top : top + rows] = band[:rows]


def shape_mask(shape: int, height: int, width: int) -> np.ndarray:
    """Boolean outline of shape ``SHAPES[shape]`` filling an ``height x width`` box.

    Integer arithmetic on doubled pixel-centre coordinates (x in (-w, w), y in (-h, h)): exact
    and identical everywhere. Every shape is symmetric about the vertical axis, so each row is
    one span |x| <= bound(y); the bounds are exact integer solutions of the shape's inequality:
      ellipse   x^2 h^2 + y^2 w^2 <= w^2 h^2
      diamond   |x| h + |y| w <= w h
      triangle  |x| h <= (y + h) w // 2     (apex at the top centre, base along the bottom)
    """
    if not 0 <= shape < len(SHAPES):
        raise ValueError(f"unknown shape {shape}")
    name = SHAPES[shape]
    if name == "rectangle":
        return np.ones((height, width), dtype=bool)
    h, w = height, width
    bounds = np.empty(height, dtype=np.int32)
    for row in range(height):
        y = 2 * row - h + 1
        if name == "ellipse":
            room = w * w * (h * h - y * y)
            bounds[row] = math.isqrt(room // (h * h)) if room >= 0 else -1
        elif name == "diamond":
            room = w * h - abs(y) * w
            bounds[row] = room // h if room >= 0 else -1
        else:
            bounds[row] = ((y + h) * w // 2) // h
    x = np.abs(2 * np.arange(width, dtype=np.int32) - width + 1)
    return x[None, :] <= bounds[:, None]


def paste(
    image: np.ndarray | None,
    mask: np.ndarray | None,
    outline: np.ndarray,
    top: int,
    left: int,
    texture: np.ndarray | None,
    cls: int,
) -> None:
    """Draw a shape whose box's top-left corner is at (top, left), clipped to the canvas.

    ``image`` (a packed canvas) gets ``texture`` (the box's packed pixels) inside the outline;
    ``mask`` gets ``cls``. Either may be None, so that masks can be drawn without pixels.
    """
    canvas = image if image is not None else mask
    assert canvas is not None
    height, width = outline.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, canvas.shape[0]), min(left + width, canvas.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    inside = outline[y0 - top : y1 - top, x0 - left : x1 - left]
    if mask is not None:
        mask[y0:y1, x0:x1][inside] = cls
    if image is not None and texture is not None:
        src = texture[y0 - top : y1 - top, x0 - left : x1 - left]
        np.copyto(image[y0:y1, x0:x1], src, where=inside)


def _periodic_noise(rng: np.random.Generator, size: int, falloff: float = 2.0) -> np.ndarray:
    """Noise in [0, 1] that tiles seamlessly (random phases, 1/f^falloff spectrum: 2 is smooth
    blotches, 1 is fine grain)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    spectrum = (
        rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)
    ) / radius**falloff
    spectrum[0, 0] = 0
    noise = np.fft.irfft2(spectrum, s=(size, size))
    noise -= noise.min()
    peak = noise.max()
    return (noise / peak if peak > 0 else noise).astype(np.float32)
