"""Drawing primitives shared by the collage and video generators.

Objects are textured shapes of one class each, pasted onto a textured background. Shape outlines
are computed with integer arithmetic only, so a mask drawn from the same parameters is bit-exact on
every machine; textures only colour the pixels and never decide which class a pixel belongs to.
Textures are periodic tiles so that any area is filled by plain array tiling (memory-copy speed:
the generators must write raw data near the disk's speed).
"""

from __future__ import annotations

import colorsys

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
                base = colorsys.hsv_to_rgb(0.08 + 0.25 * rng.random(), 0.15 + 0.15 * rng.random(),
                                           0.35 + 0.2 * rng.random())
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
                    pattern = (np.sin(2 * np.pi * xx * period) * np.sin(2 * np.pi * yy * period)
                               > 0.3).astype(np.float32)
                shade = 0.55 + 0.3 * pattern + 0.15 * noise
            tile = np.asarray(base, dtype=np.float32)[None, None, :] * shade[:, :, None] * 255
            bank[cls, variant] = np.clip(tile, 0, 255).astype(np.uint8)
    return bank


def tiled(tile: np.ndarray, height: int, width: int, y0: int = 0, x0: int = 0) -> np.ndarray:
    """An ``height x width`` view-or-copy of the periodic ``tile`` starting at offset (y0, x0)."""
    size_y, size_x = tile.shape[:2]
    y0 %= size_y
    x0 %= size_x
    reps_y = -(-(y0 + height) // size_y)
    reps_x = -(-(x0 + width) // size_x)
    if reps_y == 1 and reps_x == 1:
        return tile[y0 : y0 + height, x0 : x0 + width]
    reps = (reps_y, reps_x) + (1,) * (tile.ndim - 2)
    return np.tile(tile, reps)[y0 : y0 + height, x0 : x0 + width]


def shape_mask(shape: int, height: int, width: int) -> np.ndarray:
    """Boolean outline of shape ``SHAPES[shape]`` filling an ``height x width`` box.

    Integer arithmetic on doubled pixel-centre coordinates: exact and identical everywhere.
    """
    y = (2 * np.arange(height, dtype=np.int64) - height + 1)[:, None]  # in (-h, h)
    x = (2 * np.arange(width, dtype=np.int64) - width + 1)[None, :]  # in (-w, w)
    name = SHAPES[shape]
    if name == "rectangle":
        return np.ones((height, width), dtype=bool)
    if name == "ellipse":
        return x * x * height * height + y * y * width * width <= width * width * height * height
    if name == "diamond":
        return np.abs(x) * height + np.abs(y) * width <= width * height
    if name == "triangle":  # apex at the top centre, base along the bottom edge
        return np.abs(x) * height <= (y + height) * width // 2
    raise ValueError(f"unknown shape {shape}")


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

    ``image`` gets ``texture`` (the box's pixels) inside the outline; ``mask`` gets ``cls``.
    Either canvas may be None, so that masks can be drawn without drawing pixels.
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
        np.copyto(image[y0:y1, x0:x1], src, where=inside[:, :, None])


def _periodic_noise(rng: np.random.Generator, size: int, falloff: float = 2.0) -> np.ndarray:
    """Noise in [0, 1] that tiles seamlessly (random phases, 1/f^falloff spectrum: 2 is smooth
    blotches, 1 is fine grain)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius**falloff
    spectrum[0, 0] = 0
    noise = np.fft.irfft2(spectrum, s=(size, size))
    noise -= noise.min()
    peak = noise.max()
    return (noise / peak if peak > 0 else noise).astype(np.float32)
