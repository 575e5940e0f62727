"""The video dataset's generator, as ``harness.data.generate`` drives it (``GENERATORS``): each
camera made from its pool of segments (``harness.data.remux``) or frame by frame
(``harness.data.video``). It sits above both, so that neither imports the other back.
"""

from __future__ import annotations

from pathlib import Path

from harness.data.remux import make_from_pool
from harness.data.video import (
    GENERATOR_VERSION,
    describe,
    frame_count,
    job_count,
    make_full,
    outputs,
    prepare,
    unit_bytes,
)
from harness.scenario import VideoGenerate

# The rest of the generator's interface is the video module's own.
__all__ = [
    "GENERATOR_VERSION",
    "describe",
    "frame_count",
    "job_count",
    "make",
    "outputs",
    "prepare",
    "unit_bytes",
]


def make(root: str, params: VideoGenerate, index: int, threads: int = 1) -> None:
    """Generate camera ``index``: its tracks, then its video (from a pool, or every frame)."""
    if params.unique == "pool":
        make_from_pool(Path(root), params, index, threads)
    else:
        make_full(Path(root), params, index, threads)
