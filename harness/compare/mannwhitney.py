"""The two-sided Mann-Whitney U test: pure, exact for the repeat counts one runs, tested on its own.

What significance can mean depends on the number of repeats. The exact two-sided p of a
Mann-Whitney U test can never be smaller than 2 / C(n + m, n): 0.1 with 3 + 3 runs, 0.029 with
4 + 4, 0.008 with 5 + 5. ``smallest_p_value`` and ``repeats_needed`` say so before any test is
run, so that a comparison can tell the user when its repeats can never be significant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MannWhitney:
    """A two-sided Mann-Whitney U test of ``x`` against ``y``.

    ``u`` is U of ``x`` (the number of pairs in which the x value is larger, ties counting a
    half); ``exact`` says whether ``p_value`` comes from the exact permutation distribution of
    the rank sum (ties included) or from the normal approximation (large samples)."""

    u: float
    p_value: float
    exact: bool


EXACT_MAX_N = 60  # up to this many values in all, p comes from the exact distribution


def midranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..N of ``values``; tied values share the mean of the ranks they span."""
    data = np.asarray(values, dtype=np.float64)
    order = np.argsort(data, kind="mergesort")
    ranks = np.empty(data.size, dtype=np.float64)
    sorted_data = data[order]
    start = 0
    while start < data.size:
        end = start
        while end + 1 < data.size and sorted_data[end + 1] == sorted_data[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def smallest_p_value(n: int, m: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test can give with ``n`` and ``m``
    values (no ties; ties only raise it): 2 / C(n + m, n). Above alpha, no change can ever be
    significant, whatever its size."""
    if n < 1 or m < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n + m, n))


def repeats_needed(alpha: float) -> int:
    """The fewest repeats per side with which a change can be significant at ``alpha``: 4 for
    0.05, 5 for 0.01."""
    n = 2
    while smallest_p_value(n, n) > alpha:
        n += 1
    return n


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test. Exact (the permutation distribution of the rank sum, with
    tied values at their midranks) up to ``EXACT_MAX_N`` values in all, which covers any number of
    repeats one would run; the normal approximation with tie and continuity corrections beyond.
    Every value must be finite; both samples must be non-empty."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("mann_whitney_u needs at least one value on each side")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("mann_whitney_u takes finite values only")
    n, m = a.size, b.size
    ranks = midranks(np.concatenate([a, b]))
    u = float(ranks[:n].sum() - n * (n + 1) / 2)
    if n + m <= EXACT_MAX_N:
        return MannWhitney(u, _exact_p(ranks, n), True)
    return MannWhitney(u, _normal_p(u, n, m, ranks), False)


def _exact_p(ranks: np.ndarray, n: int) -> float:
    """Two-sided p of the rank sum of the first ``n`` of ``ranks`` over all C(N, n) ways to
    choose n of them: twice the smaller tail, at most 1. Midranks are whole or half numbers, so
    doubled they index an array of counts (a 0/1 knapsack over subset size and sum)."""
    doubled = np.rint(ranks * 2).astype(np.int64)
    if n > doubled.size - n:  # count subsets of the smaller side: same p, less work
        doubled = np.concatenate([doubled[n:], doubled[:n]])
        n = doubled.size - n
    observed = int(doubled[:n].sum())
    total = int(doubled.sum())
    counts = np.zeros((n + 1, total + 1), dtype=np.float64)
    counts[0, 0] = 1.0
    for value in doubled:
        # Every subset that did not hold this value may now take it: from size k-1 to size k.
        counts[1:, value:] += counts[:-1, : total + 1 - value].copy()
    distribution = counts[n]
    ways = distribution.sum()
    lower = distribution[: observed + 1].sum() / ways
    upper = distribution[observed:].sum() / ways
    return float(min(1.0, 2.0 * min(lower, upper)))


def _normal_p(u: float, n: int, m: int, ranks: np.ndarray) -> float:
    size = n + m
    _, tie_counts = np.unique(ranks, return_counts=True)
    tie_term = float((tie_counts**3 - tie_counts).sum()) / (size * (size - 1))
    variance = n * m / 12.0 * ((size + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = max(0.0, abs(u - n * m / 2.0) - 0.5) / math.sqrt(variance)
    return float(min(1.0, math.erfc(z / math.sqrt(2.0))))
