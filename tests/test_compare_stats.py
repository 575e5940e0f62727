"""The regression statistics on their own: pure functions, synthetic series, known injected changes.

The rate tests are the contract of ``harness compare``: no false alarm on 200 pairs of runs drawn
from one distribution, and a 20 % slowdown caught at least 95 % of the time with 5 repeats at 3 %
run-to-run noise. They print the rates they measure (seeded, so the numbers are reproducible).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.compare.mannwhitney import (
    mann_whitney_u,
    midranks,
    repeats_needed,
    smallest_p_value,
)
from harness.compare.stats import (
    DEFAULT_TOLERANCE_PCT,
    METHOD_TEST,
    METHOD_TOLERANCE,
    MetricSeries,
    compare_metrics,
    count_outcomes,
    min_change_for,
    relative_change_pct,
    tolerance_for,
    verdict,
)

PAIRS = 200
NOISE = 0.03  # run-to-run coefficient of variation of a quick-suite metric
SLOWDOWN = 1.20  # every sample takes 20 % longer: latency x 1.2, throughput / 1.2
THROUGHPUT = 16.7  # samples/s of the quick image-collage scenario
LATENCY_MS = 85.9  # p50 fetch latency of the quick decoded-video scenario


# --- Mann-Whitney U ---------------------------------------------------------------------------


def _enumerated_p(x: list[float], y: list[float]) -> float:
    """The two-sided exact p by brute force: every way of choosing len(x) of the pooled ranks."""
    ranks = midranks(x + y)
    observed = ranks[: len(x)].sum()
    sums = np.array(
        [ranks[list(c)].sum() for c in itertools.combinations(range(len(ranks)), len(x))]
    )
    lower = np.mean(sums <= observed + 1e-9)
    upper = np.mean(sums >= observed - 1e-9)
    return min(1.0, 2 * min(lower, upper))


def test_exact_p_matches_enumeration_with_and_without_ties() -> None:
    rng = np.random.default_rng(11)
    for _ in range(150):
        n, m = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        if rng.random() < 0.5:  # ties: a few distinct values only
            x = rng.integers(0, 4, n).astype(float).tolist()
            y = rng.integers(0, 5, m).astype(float).tolist()
        else:
            x, y = rng.normal(0, 1, n).tolist(), rng.normal(0.7, 1, m).tolist()
        found = mann_whitney_u(x, y)
        assert found.exact
        assert found.p_value == pytest.approx(_enumerated_p(x, y), abs=1e-12)


def test_known_p_values() -> None:
    # Completely separated samples give the smallest p there is: 2 / C(n + m, n).
    assert mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p_value == pytest.approx(2 / 252)
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]).p_value == pytest.approx(0.1)
    assert mann_whitney_u([6, 7, 8], [1, 2, 3]).u == 9.0
    assert mann_whitney_u([5.0] * 5, [5.0] * 5).p_value == 1.0  # nothing but ties
    # Reference values from scipy.stats.mannwhitneyu 1.17 (method="exact" / "asymptotic").
    x = [16.2, 16.9, 17.1, 16.5, 16.8]
    y = [16.0, 16.4, 15.9, 16.6, 15.7]
    assert mann_whitney_u(x, y).u == 22.0
    assert mann_whitney_u(x, y).p_value == pytest.approx(0.0555555556, rel=1e-9)
    big_x = [float(v) for v in range(40)]
    big_y = [v + 7.5 for v in range(35)]
    found = mann_whitney_u(big_x, big_y)
    assert not found.exact  # 75 values: the normal approximation
    assert found.u == 528.0
    assert found.p_value == pytest.approx(0.0685597081, rel=1e-8)


def test_normal_approximation_agrees_with_exact_where_both_apply() -> None:
    from harness.compare import mannwhitney

    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, 28).tolist(), rng.normal(0.4, 1, 30).tolist()
    exact = mann_whitney_u(x, y).p_value
    ranks = midranks(x + y)
    approximate = mannwhitney._normal_p(mann_whitney_u(x, y).u, 28, 30, ranks)
    assert approximate == pytest.approx(exact, rel=0.05)


def test_smallest_p_value_says_when_repeats_cannot_be_significant() -> None:
    assert smallest_p_value(3, 3) == pytest.approx(0.1)
    assert smallest_p_value(4, 4) == pytest.approx(2 / 70)
    assert smallest_p_value(5, 5) == pytest.approx(2 / 252)
    assert smallest_p_value(1, 10) == pytest.approx(2 / 11)
    assert smallest_p_value(0, 5) == 1.0
    assert repeats_needed(0.05) == 4 and repeats_needed(0.01) == 5 and repeats_needed(0.005) == 6


def test_mann_whitney_refuses_empty_or_non_finite_input() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_u([1.0, math.nan], [1.0])


# --- one verdict ------------------------------------------------------------------------------


def test_direction_decides_which_change_is_a_regression() -> None:
    base = [100.0, 101.0, 99.0, 100.5, 99.5]
    slower = [v * 0.8 for v in base]
    assert verdict(base, slower, "higher", 10).outcome == "regressed"
    assert verdict(base, slower, "lower", 10).outcome == "improved"
    faster = [v * 1.25 for v in base]
    assert verdict(base, faster, "higher", 10).outcome == "improved"
    assert verdict(base, faster, "lower", 10).outcome == "regressed"
    found = verdict(base, slower, "higher", 10)
    assert found.method == METHOD_TEST and found.p_value == pytest.approx(2 / 252)
    assert found.change_pct == pytest.approx(-20.0)
    assert found.baseline == 100.0 and found.current == 80.0  # medians


def test_large_and_significant_both_required() -> None:
    base = [100.0, 101.0, 99.0, 100.5, 99.5]
    # Significant (fully separated) but small: within the tolerance, ok.
    assert verdict(base, [v * 0.97 for v in base], "higher", 10).outcome == "ok"
    # Large median shift but overlapping samples: not significant, inconclusive, said so.
    noisy = [70.0, 120.0, 75.0, 101.5, 80.0]
    found = verdict(base, noisy, "higher", 10)
    assert found.outcome == "inconclusive" and "not significant" in found.reason


def test_single_runs_are_judged_by_the_tolerance_alone() -> None:
    found = verdict([100.0], [85.0], "higher", 10)
    assert found.outcome == "regressed" and found.method == METHOD_TOLERANCE
    assert "tolerance alone" in found.reason and found.p_value is None
    assert verdict([100.0], [95.0], "higher", 10).outcome == "ok"
    # One run against five: still nothing to test.
    assert verdict([100.0] * 5, [80.0], "higher", 10).method == METHOD_TOLERANCE


def test_too_few_repeats_are_inconclusive_not_passed() -> None:
    found = verdict([100.0, 101.0, 99.0], [70.0, 71.0, 69.0], "higher", 10)
    assert found.outcome == "inconclusive"
    assert "can never be significant" in found.reason and "0.1" in found.reason
    # Within the tolerance, too few repeats do not matter: ok.
    assert verdict([100.0, 101.0, 99.0], [99.0, 100.0, 98.0], "higher", 10).outcome == "ok"


def test_context_metrics_are_reported_never_judged() -> None:
    found = verdict([10.0] * 5, [50.0] * 5, "context", 10)
    assert found.outcome == "context" and found.change_pct == pytest.approx(400.0)


def test_missing_values_are_never_zero() -> None:
    found = verdict([100.0, None, 101.0], [None, None], "higher", 10)
    assert found.outcome == "missing" and found.current is None
    assert found.n_baseline == 2 and found.n_current == 0
    assert "current" in found.reason
    # None among measured values is left out, not counted as 0.
    kept = verdict([100.0, None, 100.0], [100.0, 100.0], "higher", 10)
    assert kept.outcome == "ok" and kept.n_baseline == 2
    assert verdict([math.nan], [1.0], "lower", 10).outcome == "missing"


def test_zero_and_negative_baselines() -> None:
    assert relative_change_pct(0.0, 0.0) == 0.0
    assert relative_change_pct(0.0, 2.0) is None
    assert relative_change_pct(-10.0, -5.0) == pytest.approx(50.0)  # moved up, by half
    assert verdict([0.0], [0.0], "lower", 10).outcome == "ok"
    from_zero = verdict([0.0], [5.0], "lower", 10)
    assert from_zero.outcome == "regressed" and from_zero.change_pct is None
    assert "baseline of 0" in from_zero.reason
    # From 0, a change within the absolute floor is no change worth a verdict.
    assert verdict([0.0], [0.5], "lower", 10, min_change=1.0).outcome == "ok"
    assert verdict([-10.0] * 5, [-5.0] * 5, "higher", 10).outcome == "improved"


def test_absolute_floor_keeps_near_zero_metrics_quiet() -> None:
    waits = [0.7, 0.8, 0.75, 0.72, 0.78]
    doubled = [v * 2 for v in waits]  # +100 %, significant, but under one point
    assert verdict(waits, doubled, "lower", 20).outcome == "regressed"
    assert verdict(waits, doubled, "lower", 20, min_change=min_change_for("%")).outcome == "ok"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        verdict([1.0], [1.0], "up", 10)
    with pytest.raises(ValueError):
        verdict([1.0], [1.0], "higher", 10, alpha=0)
    with pytest.raises(ValueError):
        verdict([1.0], [1.0], "higher", -1)


# --- many metrics, tolerances -----------------------------------------------------------------


def test_tolerance_layers_and_indexed_metrics() -> None:
    assert tolerance_for("samples_per_s").pct == DEFAULT_TOLERANCE_PCT["samples_per_s"]
    assert tolerance_for("gpu_util_pct[3]").pct == DEFAULT_TOLERANCE_PCT["gpu_util_pct"]
    assert tolerance_for("something_new").source == "default"
    scenario = {"samples_per_s": 7.0, "gpu_util_pct": 3.0}
    assert tolerance_for("samples_per_s", scenario) == tolerance_for("samples_per_s", scenario, {})
    assert tolerance_for("samples_per_s", scenario).pct == 7.0
    assert tolerance_for("gpu_util_pct[1]", scenario).source == "scenario"
    command = {"samples_per_s": 2.0}
    found = tolerance_for("samples_per_s", scenario, command)
    assert found.pct == 2.0 and found.source == "command line"


def test_compare_metrics_lists_missing_and_incomparable_metrics() -> None:
    def series(values: list[float | None], unit: str = "samples/s", direction: str = "higher"):
        return MetricSeries(unit, direction, tuple(values))

    baseline = {
        "samples_per_s": series([10.0, 10.1, 9.9, 10.0, 10.05]),
        "read_MBps": series([5.0] * 5, "MB/s", "context"),
        "gone": series([1.0] * 5),
        "renamed_unit": series([1.0] * 5, "MB/s"),
    }
    current = {
        "samples_per_s": series([7.0, 7.1, 6.9, 7.0, 7.05]),
        "read_MBps": series([9.0] * 5, "MB/s", "context"),
        "renamed_unit": series([1.0] * 5, "MiB/s"),
        "new": series([1.0] * 5),
    }
    found = {c.metric: c for c in compare_metrics(baseline, current)}
    assert list(found) == ["samples_per_s", "read_MBps", "gone", "renamed_unit", "new"]
    assert found["samples_per_s"].verdict.outcome == "regressed"
    assert found["read_MBps"].verdict.outcome == "context"
    assert found["gone"].verdict.outcome == "missing"
    assert found["gone"].verdict.reason == "not in the current runs"
    assert found["new"].verdict.outcome == "missing" and found["new"].verdict.n_baseline == 0
    assert found["renamed_unit"].verdict.outcome == "inconclusive"
    assert "unit" in found["renamed_unit"].verdict.reason
    counts = count_outcomes(list(found.values()))
    assert counts["regressed"] == 1 and counts["missing"] == 2 and sum(counts.values()) == 5
    loose = compare_metrics(baseline, current, command_line_tolerances={"samples_per_s": 40})
    assert loose[0].verdict.outcome == "ok" and loose[0].tolerance_source == "command line"


# --- rates on synthetic series ----------------------------------------------------------------


def _runs(rng: np.random.Generator, centre: float, repeats: int, noise: float) -> list[float]:
    return (centre * (1 + noise * rng.standard_normal(repeats))).tolist()


def _rates(
    seed: int,
    *,
    metric: str,
    direction: str,
    centre: float,
    changed: float,
    repeats: int,
    noise: float = NOISE,
) -> dict[str, float]:
    """Share of PAIRS comparisons that end in each verdict, with the shipped default tolerance."""
    rng = np.random.default_rng(seed)
    tolerance = tolerance_for(metric).pct
    counts = dict.fromkeys(("ok", "regressed", "improved", "inconclusive"), 0)
    for _ in range(PAIRS):
        base = _runs(rng, centre, repeats, noise)
        cur = _runs(rng, changed, repeats, noise)
        counts[verdict(base, cur, direction, tolerance).outcome] += 1
    return {outcome: count / PAIRS for outcome, count in counts.items()}


def _show(capsys: pytest.CaptureFixture[str], label: str, rates: dict[str, float]) -> None:
    with capsys.disabled():
        text = ", ".join(f"{k} {v:6.1%}" for k, v in rates.items())
        print(f"\n  [rates, {PAIRS} pairs] {label}: {text}")


@pytest.mark.parametrize(
    ("metric", "direction", "centre"),
    [("samples_per_s", "higher", THROUGHPUT), ("fetch_latency_p50_ms", "lower", LATENCY_MS)],
)
def test_no_false_alarm_on_identical_distributions(
    capsys: pytest.CaptureFixture[str], metric: str, direction: str, centre: float
) -> None:
    rates = _rates(1, metric=metric, direction=direction, centre=centre, changed=centre, repeats=5)
    _show(capsys, f"no change, {metric}, 5 vs 5 repeats, {NOISE:.0%} noise", rates)
    assert rates["regressed"] == 0.0
    assert rates["improved"] == 0.0


@pytest.mark.parametrize(
    ("metric", "direction", "centre", "slowed"),
    [
        ("samples_per_s", "higher", THROUGHPUT, THROUGHPUT / SLOWDOWN),
        ("fetch_latency_p50_ms", "lower", LATENCY_MS, LATENCY_MS * SLOWDOWN),
    ],
)
def test_detects_a_20_pct_slowdown_with_5_repeats(
    capsys: pytest.CaptureFixture[str], metric: str, direction: str, centre: float, slowed: float
) -> None:
    rates = _rates(2, metric=metric, direction=direction, centre=centre, changed=slowed, repeats=5)
    _show(capsys, f"20 % slowdown, {metric}, 5 vs 5 repeats, {NOISE:.0%} noise", rates)
    assert rates["regressed"] >= 0.95
    assert rates["improved"] == 0.0


@pytest.mark.parametrize("noise", [0.06, 0.10])
def test_noisier_metrics_stay_within_the_tests_false_alarm_bound(
    capsys: pytest.CaptureFixture[str], noise: float
) -> None:
    """Real p50 latencies spread 10 % from run to run on a busy 2-core machine. The rank test
    bounds false alarms in one direction by alpha / 2 whatever the noise; the tolerance lowers
    them further. What noise costs is detection, which the printed rates show."""
    common = {"metric": "fetch_latency_p50_ms", "direction": "lower", "centre": LATENCY_MS}
    same = _rates(7, changed=LATENCY_MS, repeats=5, noise=noise, **common)
    _show(capsys, f"no change, p50 latency, 5 vs 5 repeats, {noise:.0%} noise", same)
    slowed = _rates(8, changed=LATENCY_MS * SLOWDOWN, repeats=5, noise=noise, **common)
    _show(capsys, f"20 % slowdown, p50 latency, 5 vs 5 repeats, {noise:.0%} noise", slowed)
    assert same["regressed"] <= 0.025
    assert slowed["regressed"] > same["regressed"]


def test_no_false_alarm_with_occasional_outlier_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Real runs now and then meet a noisy neighbour: one run in ten is 15 % slower. The median
    and the rank test shrug it off."""
    rng = np.random.default_rng(3)
    tolerance = tolerance_for("samples_per_s").pct
    counts = dict.fromkeys(("ok", "regressed", "improved", "inconclusive"), 0)
    for _ in range(PAIRS):
        sides = []
        for _side in range(2):
            values = np.array(_runs(rng, THROUGHPUT, 5, NOISE))
            values[rng.random(5) < 0.1] /= 1.15
            sides.append(values.tolist())
        counts[verdict(sides[0], sides[1], "higher", tolerance).outcome] += 1
    rates = {k: v / PAIRS for k, v in counts.items()}
    _show(capsys, "no change, 1 run in 10 an outlier, 5 vs 5 repeats", rates)
    assert rates["regressed"] == 0.0


def test_what_fewer_repeats_can_and_cannot_say(capsys: pytest.CaptureFixture[str]) -> None:
    """3 vs 3 repeats can never be significant: a slowdown is inconclusive (said), never ok.
    Single runs fall back on the tolerance alone, and pay for it in false alarms at this noise."""
    common = {"metric": "samples_per_s", "direction": "higher", "centre": THROUGHPUT}
    three = _rates(4, changed=THROUGHPUT / SLOWDOWN, repeats=3, **common)
    _show(capsys, "20 % slowdown, 3 vs 3 repeats", three)
    assert three["inconclusive"] >= 0.95 and three["regressed"] == 0.0
    single_slow = _rates(5, changed=THROUGHPUT / SLOWDOWN, repeats=1, **common)
    _show(capsys, "20 % slowdown, single runs (tolerance only)", single_slow)
    assert single_slow["regressed"] >= 0.9
    single_same = _rates(6, changed=THROUGHPUT, repeats=1, **common)
    _show(capsys, "no change, single runs (tolerance only)", single_same)
    assert single_same["regressed"] <= 0.05
