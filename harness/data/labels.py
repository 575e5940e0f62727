"""Labels for bring-your-own data that has no masks: a rule declared in the scenario derives them.

Reports say such labels were derived: they keep the training loop real (a loss that can fall, a
mIoU that can rise) without claiming any meaning about the user's pictures.
"""

from __future__ import annotations

import numpy as np

RULES = ("luma_bins",)


def derive_mask(image: np.ndarray, rule: str, classes: int) -> np.ndarray:
    """Class of each pixel of an RGB uint8 image under ``rule``, uint8 HxW."""
    if rule == "luma_bins":
        # ITU-R BT.601 luma in integer arithmetic, cut into `classes` equal bins.
        rgb = image.astype(np.uint32)
        luma = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2]) // 1000
        return np.minimum(luma * classes // 256, classes - 1).astype(np.uint8)
    raise ValueError(f"unknown label rule {rule!r}; known: {', '.join(RULES)}")
