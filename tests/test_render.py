"""Unit tests of the drawing primitives: exact outlines, seamless tiles, clipped pasting."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import render


@pytest.mark.parametrize("shape", range(len(render.SHAPES)))
def test_outlines_fill_their_box_and_are_mirror_symmetric(shape: int) -> None:
    outline = render.shape_mask(shape, 31, 48)
    assert outline.shape == (31, 48)
    assert outline.any(axis=0).all(), "every column of the box is touched"
    assert outline[-1].any() and outline[:, 0].any()
    np.testing.assert_array_equal(outline, outline[:, ::-1])


def test_ellipse_area_is_close_to_pi_ab() -> None:
    outline = render.shape_mask(render.SHAPES.index("ellipse"), 200, 100)
    assert abs(outline.sum() / (np.pi * 100 * 50) - 1) < 0.01


def test_texture_tiles_are_deterministic_and_seamless() -> None:
    bank = render.texture_bank(seed=5, classes=3, variants=2)
    np.testing.assert_array_equal(bank, render.texture_bank(seed=5, classes=3, variants=2))
    assert not np.array_equal(bank, render.texture_bank(seed=6, classes=3, variants=2))
    tile = bank[1, 0]
    wide = render.tiled(tile, 300, 700, 10, 20)
    assert wide.shape == (300, 700, 3)
    np.testing.assert_array_equal(wide[:, 256:512], wide[:, 0:256])
    np.testing.assert_array_equal(wide[0, 0], tile[10, 20])


def test_pack_and_unpack_round_trip() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    packed = render.pack(rgb)
    assert packed.shape == (5, 7) and packed.dtype == np.uint32
    np.testing.assert_array_equal(render.unpack(packed), rgb)
    np.testing.assert_array_equal(render.rgba_view(packed)[..., 3], 255)


def test_fill_tiled_matches_tiled() -> None:
    tile = render.pack(render.texture_bank(seed=1, classes=2, variants=1)[0, 0])
    canvas = np.empty((600, 300), np.uint32)
    render.fill_tiled(canvas, tile, 17, 99)
    np.testing.assert_array_equal(canvas, render.tiled(tile, 600, 300, 17, 99))


def test_paste_clips_at_every_edge() -> None:
    image = np.zeros((10, 10), np.uint32)
    mask = np.zeros((10, 10), np.uint8)
    outline = np.ones((4, 4), bool)
    texture = render.pack(np.full((4, 4, 3), 200, np.uint8))
    render.paste(image, mask, outline, -2, 8, texture, 3)
    assert mask.sum() == 3 * 2 * 2
    assert (render.unpack(image)[0:2, 8:10] == 200).all()
    render.paste(image, mask, outline, 20, 20, texture, 1)  # fully outside: no change
    assert mask.sum() == 12
