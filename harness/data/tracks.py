"""Track tables: the objects crossing one camera's view, from which every mask is drawn exactly.

A video dataset stores no mask per frame: each video has a track table beside it
(``videos/cam000.tracks.json``), and the class mask of any frame is drawn from it with integer
arithmetic only, so it is bit-exact anywhere and costs far less than decoding a lossless mask
stream. The generator writes the tables (``harness.data.video``); the runtime readers (the
sources, the frame cache, the GPU backends) load them and draw masks.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from harness.data import render
from harness.data.files import read_json, write_json_atomic
from harness.data.manifest import check_format
from harness.errors import HarnessError

TRACKS_FORMAT = "harness-tracks"
TRACKS_FORMAT_VERSION = 1

# Track columns. Positions are fixed point (1/256 pixel) so that motion is exact integer maths.
TRACK_COLUMNS = ("cls", "shape", "w", "h", "t0", "t1", "x0", "y0", "vx", "vy", "variant")
CLS, SHAPE, W, H, T0, T1, X0, Y0, VX, VY, VARIANT = range(len(TRACK_COLUMNS))
FIXED = 256


class Tracks:
    """Objects crossing one camera's view; draws the exact class mask of any frame."""

    def __init__(self, table: np.ndarray, width: int, height: int, frames: int) -> None:
        self.table = table  # int64 [objects, len(TRACK_COLUMNS)], sorted by t0
        self.width, self.height, self.frames = width, height, frames
        self._longest = int((table[:, T1] - table[:, T0]).max()) if len(table) else 0

    def alive(self, t: int) -> np.ndarray:
        """Rows of the objects in view at frame ``t``, in drawing order."""
        starts = self.table[:, T0]
        lo = int(np.searchsorted(starts, t - self._longest, side="right"))
        hi = int(np.searchsorted(starts, t, side="right"))
        rows = self.table[lo:hi]
        return rows[rows[:, T1] > t]

    @staticmethod
    def position(row: np.ndarray, t: int) -> tuple[int, int]:
        """Top-left corner of the object's box at frame ``t`` (floor of fixed point: exact)."""
        dt = t - int(row[T0])
        return (int(row[Y0]) + int(row[VY]) * dt) // FIXED, (
            int(row[X0]) + int(row[VX]) * dt
        ) // FIXED

    def mask(self, t: int) -> np.ndarray:
        """The class of every pixel of frame ``t``, uint8 HxW."""
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        for row in self.alive(t):
            top, left = self.position(row, t)
            outline = shape_outline(int(row[SHAPE]), int(row[H]), int(row[W]))
            render.paste(None, mask, outline, top, left, None, int(row[CLS]))
        return mask

    def save(self, path: Path, fps: int) -> None:
        write_json_atomic(
            path,
            {
                "format": TRACKS_FORMAT,
                "format_version": TRACKS_FORMAT_VERSION,
                "width": self.width,
                "height": self.height,
                "frames": self.frames,
                "fps": fps,
                "fixed_point": FIXED,
                "shapes": list(render.SHAPES),
                "columns": list(TRACK_COLUMNS),
                "tracks": self.table.tolist(),
            },
        )

    @classmethod
    def load(cls, path: Path) -> Tracks:
        document = read_json(path)
        if document is None:
            raise HarnessError(f"{path}: missing: the masks of its video cannot be drawn")
        check_format(path, document, TRACKS_FORMAT, TRACKS_FORMAT_VERSION)
        table = np.array(document["tracks"], dtype=np.int64).reshape(-1, len(TRACK_COLUMNS))
        return cls(table, document["width"], document["height"], document["frames"])


@functools.lru_cache(maxsize=512)
def shape_outline(shape: int, height: int, width: int) -> np.ndarray:
    """The cached outline of a shape at a size: objects keep their size across many frames."""
    return render.shape_mask(shape, height, width)
