"""Track tables: the objects crossing one camera's view, from which every mask is drawn exactly.

A video dataset stores no mask per frame: each video has a track table beside it
(``videos/cam000.tracks.json``), and the class mask of any frame is drawn from it with integer
arithmetic only, so it is bit-exact anywhere and costs far less than decoding a lossless mask
stream. The generator writes the tables (``harness.data.video``); the runtime readers (the
sources, the frame cache, the GPU backends) load them and draw masks.

A video generated from a pool of segments (``unique: pool``) repeats those segments bit for bit,
and its masks repeat with them: the table then describes the pool's frames, and a schedule says
which pool segment each segment of the video shows (format version 2, see ``Schedule``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import render
from harness.errors import HarnessError
from harness.files import DATASET_JSON, check_format, read_json, write_json_atomic

TRACKS_FORMAT = "harness-tracks"
TRACKS_FORMAT_VERSION = 2  # 2 added the segment schedule; version 1 files (no schedule) still read

# Track columns. Positions are fixed point (1/256 pixel) so that motion is exact integer maths.
TRACK_COLUMNS = ("cls", "shape", "w", "h", "t0", "t1", "x0", "y0", "vx", "vy", "variant")
CLS, SHAPE, W, H, T0, T1, X0, Y0, VX, VY, VARIANT = range(len(TRACK_COLUMNS))
FIXED = 256


@dataclass(frozen=True)
class Schedule:
    """Which pool frame each frame of a segment-repeated video shows.

    The pool holds ``len(pool_starts)`` segments; video segment ``j`` (``segment_frames`` long)
    shows pool segment ``order[j]``, i.e. pool frames ``pool_starts[order[j]] + k``. The last,
    shorter segment of a video whose length is not a whole number of segments is ``tail``: pool
    frames from ``tail_start`` on.
    """

    segment_frames: int
    pool_starts: tuple[int, ...]
    order: tuple[int, ...]
    tail_start: int | None = None

    def source(self, t: int) -> int:
        segment, offset = divmod(t, self.segment_frames)
        if segment < len(self.order):
            return self.pool_starts[self.order[segment]] + offset
        assert self.tail_start is not None, f"frame {t} is past the schedule"
        return self.tail_start + offset

    def to_json(self) -> dict[str, Any]:
        return {
            "segment_frames": self.segment_frames,
            "pool_starts": list(self.pool_starts),
            "order": list(self.order),
            "tail_start": self.tail_start,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Schedule:
        return cls(
            int(document["segment_frames"]),
            tuple(int(v) for v in document["pool_starts"]),
            tuple(int(v) for v in document["order"]),
            None if document.get("tail_start") is None else int(document["tail_start"]),
        )


class Tracks:
    """Objects crossing one camera's view; draws the exact class mask of any frame.

    With a ``schedule``, the table describes the pool's frames and frame ``t`` of the video is
    pool frame ``schedule.source(t)``; ``frames`` is then the video's length."""

    def __init__(
        self,
        table: np.ndarray,
        width: int,
        height: int,
        frames: int,
        schedule: Schedule | None = None,
    ) -> None:
        self.table = table  # int64 [objects, len(TRACK_COLUMNS)], sorted by t0
        self.width, self.height, self.frames = width, height, frames
        self.schedule = schedule
        self._longest = int((table[:, T1] - table[:, T0]).max()) if len(table) else 0

    def source(self, t: int) -> int:
        """The frame of the table that video frame ``t`` shows."""
        return t if self.schedule is None else self.schedule.source(t)

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
        t = self.source(t)
        for row in self.alive(t):
            top, left = self.position(row, t)
            outline = shape_outline(int(row[SHAPE]), int(row[H]), int(row[W]))
            render.paste(None, mask, outline, top, left, None, int(row[CLS]))
        return mask

    def save(self, path: Path, fps: int) -> None:
        document: dict[str, Any] = {
            "format": TRACKS_FORMAT,
            # Without a schedule the file is what version 1 readers read.
            "format_version": TRACKS_FORMAT_VERSION if self.schedule else 1,
        }
        if self.schedule is not None:
            document["schedule"] = self.schedule.to_json()
        write_json_atomic(
            path,
            {
                **document,
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
        document = read_json(path, DATASET_JSON)
        if document is None:
            raise HarnessError(f"{path}: missing: the masks of its video cannot be drawn")
        older = document.get("format_version") == 1 and document.get("format") == TRACKS_FORMAT
        check_format(path, document, TRACKS_FORMAT, 1 if older else TRACKS_FORMAT_VERSION)
        table = np.array(document["tracks"], dtype=np.int64).reshape(-1, len(TRACK_COLUMNS))
        schedule = document.get("schedule")
        return cls(
            table,
            document["width"],
            document["height"],
            document["frames"],
            Schedule.from_json(schedule) if schedule else None,
        )


@functools.lru_cache(maxsize=512)
def shape_outline(shape: int, height: int, width: int) -> np.ndarray:
    """The cached outline of a shape at a size: objects keep their size across many frames."""
    return render.shape_mask(shape, height, width)
