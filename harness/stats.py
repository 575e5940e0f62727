"""Pure statistics for summaries: no I/O, no clocks, tested on their own.

Every metric in a summary is ``{"value", "unit", "direction"}``; ``direction`` says which way is
better: "higher", "lower", or "context" (neither: a fact about the run, such as MB/s read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

Direction = Literal["higher", "lower", "context"]
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def metric(value: float | int | None, unit: str, direction: Direction) -> dict[str, object]:
    """One summary entry. ``None`` values mean "not measured" and are kept, never turned into 0."""
    if value is not None:
        value = round(float(value), 6)
    return {"value": value, "unit": unit, "direction": direction}


def percentile_label(q: float) -> str:
    """50 -> "p50", 99.9 -> "p99.9"."""
    return f"p{q:g}"


def percentiles(
    values: Sequence[float] | np.ndarray, qs: Sequence[float] = PERCENTILES
) -> dict[str, float | None]:
    """Percentiles by linear interpolation (NumPy's default); None for each when empty."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return {percentile_label(q): None for q in qs}
    found = np.percentile(data, qs)
    return {percentile_label(q): float(v) for q, v in zip(qs, found, strict=True)}


def window_mean(
    t: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, start: float, end: float
) -> float | None:
    """Mean of the samples taken in [start, end]; None when no sample falls in it."""
    times = np.asarray(t, dtype=np.float64)
    data = np.asarray(values, dtype=np.float64)
    inside = (times >= start) & (times <= end) & np.isfinite(data)
    return float(data[inside].mean()) if inside.any() else None


def counter_rate(
    t: Sequence[float] | np.ndarray, counter: Sequence[float] | np.ndarray, start: float, end: float
) -> float | None:
    """Average rate of a cumulative counter over [start, end] (units per second), from the
    samples nearest inside the window; None with fewer than two samples in it."""
    times = np.asarray(t, dtype=np.float64)
    data = np.asarray(counter, dtype=np.float64)
    inside = np.flatnonzero((times >= start) & (times <= end))
    if inside.size < 2:
        return None
    first, last = inside[0], inside[-1]
    elapsed = times[last] - times[first]
    return float((data[last] - data[first]) / elapsed) if elapsed > 0 else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def mean_gpu_util(metrics: Mapping[str, Mapping[str, object]]) -> float | None:
    """Mean of the per-GPU ``gpu_util_pct[i]`` metrics of a summary; None when none was measured."""
    values = [
        float(entry["value"])  # type: ignore[arg-type]
        for name, entry in metrics.items()
        if name.startswith("gpu_util_pct[") and entry.get("value") is not None
    ]
    return float(np.mean(values)) if values else None


class TimeDraws:
    """Times drawn at random (seeded) from measured ones, or their mean where there are none,
    times a scale: how emulated work (a training step, a sample's preprocessing) lasts as long
    as a measured one did, with the measured spread."""

    def __init__(self, samples: Sequence[float], mean: float, scale: float, seed: object) -> None:
        self._samples = np.asarray(samples, dtype=np.float64) * scale
        self._mean = mean * scale
        self._rng = np.random.default_rng(seed)  # type: ignore[arg-type]

    def next(self) -> float:
        if self._samples.size == 0:
            return self._mean
        return float(self._samples[self._rng.integers(self._samples.size)])
