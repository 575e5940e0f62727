"""``harness.stats`` on its own: every helper against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import (
    PERCENTILES,
    counter_rate,
    mean_gpu_util,
    metric,
    percentile_label,
    percentiles,
    ratio,
    window_mean,
)


def test_metric_rounds_and_keeps_not_measured_as_none() -> None:
    assert metric(1 / 3, "samples/s", "higher") == {
        "value": 0.333333,
        "unit": "samples/s",
        "direction": "higher",
    }
    found = metric(7, "steps", "context")
    assert found["value"] == 7.0 and isinstance(found["value"], float)
    assert metric(np.float32(2.5), "ms", "lower")["value"] == 2.5
    assert metric(None, "%", "lower") == {"value": None, "unit": "%", "direction": "lower"}
    assert metric(0, "%", "lower")["value"] == 0.0  # a measured zero stays a zero


def test_percentile_labels() -> None:
    assert [percentile_label(q) for q in PERCENTILES] == ["p50", "p90", "p99", "p99.9"]
    assert percentile_label(99.99) == "p99.99"
    assert percentile_label(5) == "p5"


def test_percentiles_interpolate_linearly() -> None:
    # 0, 1, ..., 100: the q-th percentile is q itself.
    found = percentiles(np.arange(101.0))
    assert list(found) == ["p50", "p90", "p99", "p99.9"]
    assert found == pytest.approx({"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9})
    # Four values: position q/100 * 3 between them.
    four = percentiles([40.0, 10.0, 30.0, 20.0])  # order does not matter
    assert four == pytest.approx({"p50": 25.0, "p90": 37.0, "p99": 39.7, "p99.9": 39.97})
    assert percentiles([5.0], (50.0, 99.0)) == {"p50": 5.0, "p99": 5.0}
    assert all(isinstance(v, float) for v in four.values())


def test_percentiles_skip_non_finite_values_and_say_none_when_empty() -> None:
    noisy = percentiles([1.0, math.nan, 3.0, math.inf, -math.inf], (50.0,))
    assert noisy == {"p50": 2.0}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "p99.9": None}
    assert percentiles([math.nan, math.nan], (50.0, 99.0)) == {"p50": None, "p99": None}


def test_window_mean_takes_the_samples_inside_both_ends_included() -> None:
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    values = [100.0, 10.0, 20.0, math.nan, 30.0]
    assert window_mean(t, values, 1.0, 4.0) == pytest.approx(20.0)  # 10, 20, 30; NaN skipped
    assert window_mean(t, values, 0.5, 2.5) == pytest.approx(15.0)
    assert window_mean(t, values, 0.0, 0.0) == pytest.approx(100.0)
    assert window_mean(t, values, 4.5, 9.0) is None  # no sample in the window
    assert window_mean(t, values, 2.5, 3.5) is None  # only a NaN in it
    assert window_mean([], [], 0.0, 1.0) is None


def test_counter_rate_from_the_first_and_last_samples_inside() -> None:
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    counter = [0.0, 10.0, 30.0, 60.0, 100.0]
    assert counter_rate(t, counter, 1.0, 3.0) == pytest.approx((60 - 10) / 2)
    assert counter_rate(t, counter, 0.5, 4.0) == pytest.approx((100 - 10) / 3)
    assert counter_rate(t, counter, 0.0, 4.0) == pytest.approx(25.0)
    assert counter_rate(t, counter, 1.5, 2.5) is None  # one sample: no rate
    assert counter_rate(t, counter, 5.0, 6.0) is None
    assert counter_rate([1.0, 1.0], [0.0, 5.0], 0.0, 2.0) is None  # no time elapsed
    assert counter_rate([0.0, 2.0], [8.0, 8.0], 0.0, 2.0) == 0.0  # a counter that stood still


def test_ratio_is_none_when_either_side_is_unknown_or_the_denominator_zero() -> None:
    assert ratio(3, 4) == 0.75
    assert ratio(0, 4) == 0.0  # zero read is a measurement, not "unknown"
    assert ratio(None, 4) is None
    assert ratio(3, None) is None
    assert ratio(3, 0) is None


def test_mean_gpu_util_averages_the_measured_gpus_only() -> None:
    metrics = {
        "gpu_util_pct[0]": metric(90.0, "%", "higher"),
        "gpu_util_pct[1]": metric(70.0, "%", "higher"),
        "gpu_util_pct[2]": metric(None, "%", "higher"),  # not measured: left out, not a zero
        "gpu_mem_util_pct[0]": metric(5.0, "%", "context"),
        "busy_pct": metric(10.0, "%", "higher"),
    }
    assert mean_gpu_util(metrics) == pytest.approx(80.0)
    assert mean_gpu_util({"gpu_util_pct[3]": metric(0.0, "%", "higher")}) == 0.0
    assert mean_gpu_util({"gpu_util_pct[0]": metric(None, "%", "higher")}) is None
    assert mean_gpu_util({"busy_pct": metric(99.0, "%", "higher")}) is None
    assert mean_gpu_util({}) is None
