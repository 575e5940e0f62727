"""``harness.summary`` on synthetic step and sample tables: every headline number worked out by
hand, the cross-checks' verdicts, the threshold verdicts, and "not measured" kept apart from 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.scenario import Thresholds
from harness.stats import metric
from harness.summary import (
    busy_vs_gpu_check,
    bytes_cross_check,
    loop_metrics,
    measured_window,
    threshold_verdicts,
)

STEP_COLUMNS = ["step", "t_start", "t_end", "wait_s", "compute_s", "loss", "samples", "warmup"]
SAMPLE_COLUMNS = ["t_end", "latency_ms", "requested_bytes", "first_time_bytes", "step"]


def _steps(rows: list[tuple], rank: int = 0) -> pd.DataFrame:
    """Rows of (step, t_start, t_end, wait_s, compute_s, loss, samples, warmup)."""
    frame = pd.DataFrame(rows, columns=STEP_COLUMNS)
    frame["warmup"] = frame["warmup"].astype(bool)
    return frame.assign(rank=rank)


def _samples(rows: list[tuple], rank: int = 0) -> pd.DataFrame:
    """Rows of (t_end, latency_ms, requested_bytes, first_time_bytes, step)."""
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS).assign(rank=rank)


# Two warm-up steps, then three measured ones from t=2.0 to t=4.0 (a 2 s window):
# compute 0.4 + 0.3 + 0.5 = 1.2 s (60 %), wait 0.1 + 0.2 + 0.5 = 0.8 s (40 %), 12 samples.
STEPS = _steps(
    [
        (0, 0.0, 1.0, 0.9, 0.1, 2.0, 4, True),
        (1, 1.0, 1.5, 0.1, 0.4, 1.8, 4, True),
        (2, 2.0, 2.5, 0.1, 0.4, 1.6, 4, False),
        (3, 2.5, 3.0, 0.2, 0.3, 1.4, 4, False),
        (4, 3.0, 4.0, 0.5, 0.5, 1.2, 4, False),
    ]
)
SAMPLES = _samples(
    [
        (0.9, 1000.0, 100e6, 100e6, 0),  # a warm-up sample: neither its latency nor its bytes
        (1.9, 40.0, 1e6, 1e6, 2),  # consumed by a measured step, fetched before the window
        (2.2, 10.0, 2e6, 2e6, 2),
        (2.7, 30.0, 6e6, 0.0, 3),
        (3.5, 20.0, math.nan, math.nan, 4),  # a sample whose bytes were not counted
    ]
)


def _values(metrics: dict[str, dict]) -> dict[str, object]:
    return {name: entry["value"] for name, entry in metrics.items()}


def test_measured_window_is_the_steps_after_warm_up() -> None:
    assert measured_window(STEPS) == (2.0, 4.0)
    assert measured_window(STEPS[STEPS["warmup"]]) is None
    assert measured_window(STEPS.iloc[0:0]) is None


def test_loop_metrics_recomputed_by_hand() -> None:
    metrics = loop_metrics(STEPS, SAMPLES)
    values = _values(metrics)
    assert values["steps"] == 5 and values["measured_steps"] == 3
    assert values["samples_per_s"] == pytest.approx(12 / 2.0)
    assert values["busy_pct"] == pytest.approx(1.2 / 2.0 * 100)
    assert values["data_wait_pct"] == pytest.approx(0.8 / 2.0 * 100)
    # Latency of the samples the measured steps consumed: 40, 10, 30, 20 ms (not the 1000).
    assert values["fetch_latency_p50_ms"] == pytest.approx(25.0)
    assert values["fetch_latency_p90_ms"] == pytest.approx(37.0)
    assert values["fetch_latency_p99_ms"] == pytest.approx(39.7)
    assert values["fetch_latency_p99.9_ms"] == pytest.approx(39.97)
    # Batch wait of the measured steps: 100, 200, 500 ms.
    assert values["batch_wait_p50_ms"] == pytest.approx(200.0)
    assert values["batch_wait_p99_ms"] == pytest.approx(200 + 0.98 * 300)
    # Bytes of the samples fetched inside the window (2 + 6 MB; the uncounted one adds
    # nothing) over its 2 s.
    assert values["requested_MBps"] == pytest.approx(4.0)
    assert values["loss_first"] == pytest.approx(2.0)  # the very first step, warm-up included
    assert values["loss_last"] == pytest.approx(np.mean([2.0, 1.8, 1.6, 1.4, 1.2]))
    # one rank: no per-rank breakdown
    assert not [name for name in metrics if "[rank" in name]


def test_loop_metrics_units_and_directions() -> None:
    metrics = loop_metrics(STEPS, SAMPLES)
    expected = {
        "steps": ("steps", "context"),
        "measured_steps": ("steps", "context"),
        "samples_per_s": ("samples/s", "higher"),
        "busy_pct": ("%", "higher"),
        "data_wait_pct": ("%", "lower"),
        "fetch_latency_p99_ms": ("ms", "lower"),
        "batch_wait_p50_ms": ("ms", "lower"),
        "requested_MBps": ("MB/s", "context"),
        "loss_last": ("", "lower"),
    }
    for name, (unit, direction) in expected.items():
        assert (metrics[name]["unit"], metrics[name]["direction"]) == (unit, direction), name


def test_requested_bytes_a_backend_cannot_count_are_not_measured() -> None:
    uncounted = SAMPLES.assign(requested_bytes=math.nan, first_time_bytes=math.nan)
    values = _values(loop_metrics(STEPS, uncounted))
    assert values["requested_MBps"] is None  # not 0 MB/s
    assert values["fetch_latency_p50_ms"] == pytest.approx(25.0)  # latency was still timed
    untimed = SAMPLES.assign(latency_ms=math.nan)
    values = _values(loop_metrics(STEPS, untimed))
    assert values["fetch_latency_p50_ms"] is None and values["fetch_latency_p99.9_ms"] is None
    no_samples = _values(loop_metrics(STEPS, SAMPLES.iloc[0:0]))
    assert no_samples["fetch_latency_p50_ms"] is None and no_samples["requested_MBps"] is None
    assert no_samples["busy_pct"] == pytest.approx(60.0)


def test_ranks_are_averaged_and_listed_each() -> None:
    # Rank 1: one measured step of 1 s, all compute (100 % busy, 0 % waiting), 4 samples.
    other = _steps(
        [(0, 0.0, 1.0, 0.5, 0.5, 2.2, 4, True), (1, 3.0, 4.0, 0.0, 1.0, 2.1, 4, False)], 1
    )
    steps = pd.concat([STEPS, other], ignore_index=True)
    samples = pd.concat([SAMPLES, _samples([(3.2, 50.0, 4e6, 4e6, 1)], 1)], ignore_index=True)
    values = _values(loop_metrics(steps, samples))
    assert values["busy_pct[rank0]"] == pytest.approx(60.0)
    assert values["busy_pct[rank1]"] == pytest.approx(100.0)
    assert values["busy_pct"] == pytest.approx(80.0)  # the mean of the ranks
    assert values["data_wait_pct"] == pytest.approx((40.0 + 0.0) / 2)
    assert values["samples_per_s"] == pytest.approx(16 / 2.0)  # every rank's, over the window
    assert values["measured_steps"] == 4 and values["steps"] == 7
    # Rank 1's sample belongs to its step 1 (measured), not to rank 0's warm-up step 1.
    assert values["fetch_latency_p50_ms"] == pytest.approx(30.0)  # 10, 20, 30, 40, 50
    assert values["requested_MBps"] == pytest.approx((2 + 6 + 4) / 2.0)


@pytest.mark.parametrize("steps", [STEPS[STEPS["warmup"]], STEPS.iloc[0:0]])
def test_a_run_with_no_measured_step_is_not_measured_not_zero(steps: pd.DataFrame) -> None:
    metrics = loop_metrics(steps, SAMPLES)
    assert metrics["steps"]["value"] == float(len(steps))
    for name, direction in (
        ("samples_per_s", "higher"),
        ("busy_pct", "higher"),
        ("data_wait_pct", "lower"),
    ):
        assert metrics[name]["value"] is None, name
        assert metrics[name]["direction"] == direction
    # whatever else is listed, nothing is a made-up 0
    assert all(entry["value"] is None for name, entry in metrics.items() if name != "steps")


def test_bytes_cross_check_verdicts() -> None:
    agree = bytes_cross_check(1_020_000, 1_000_000, "cold")
    assert agree["verdict"] == "agree within 5%" and agree["ok"] is True
    assert agree["ratio"] == 1.02 and agree["expected"] is True
    assert agree["read_bytes"] == 1_020_000 and agree["first_requested_bytes"] == 1_000_000
    assert bytes_cross_check(960_000, 1_000_000, "cold")["ok"] is True
    served = bytes_cross_check(250_000, 1_000_000, "cold")
    assert served["ok"] is False and served["ratio"] == 0.25
    assert served["verdict"] == (
        "storage served 25% of the bytes asked for: the rest came from memory"
    )
    ahead = bytes_cross_check(1_500_000, 1_000_000, "cold")
    assert ahead["ok"] is False
    assert ahead["verdict"] == "storage read 1.50x the bytes asked for (read-ahead or other reads)"
    assert bytes_cross_check(1_060_000, 1_000_000, "cold")["ok"] is False  # just outside 5 %
    # In a warm run agreement is not expected, so not judged.
    warm = bytes_cross_check(10_000, 1_000_000, "warm")
    assert warm["ok"] is None and warm["expected"] is False and warm["ratio"] == 0.01
    assert warm["verdict"].startswith("storage served 1% of the bytes")
    for read, requested in ((None, 1_000_000), (1_000_000, None), (5, 0)):
        missing = bytes_cross_check(read, requested, "cold")
        assert missing["verdict"] == "not available", (read, requested)
        assert missing["ok"] is None and missing["ratio"] is None


def test_busy_vs_gpu_check() -> None:
    found = busy_vs_gpu_check(80.0, 95.0)  # the mean NVML utilisation of the GPUs
    assert found["gpu_util_pct"] == 95.0 and found["busy_pct"] == 80.0
    assert found["difference_pct_points"] == pytest.approx(15.0)
    assert found["verdict"] == "NVML reads +15.0 points against the loop's busy %"
    below = busy_vs_gpu_check(97.25, 90.0)
    assert below["difference_pct_points"] == pytest.approx(-7.25)
    assert below["verdict"] == "NVML reads -7.2 points against the loop's busy %"
    none = busy_vs_gpu_check(99.0, None)
    assert none["verdict"] == "not available (no GPU)"
    assert none["gpu_util_pct"] is None and none["difference_pct_points"] is None


def _measured(**values: float | None) -> dict[str, dict]:
    units = {"data_wait_pct": "lower", "fetch_latency_p99_ms": "lower"}
    return {name: metric(v, "", units.get(name, "higher")) for name, v in values.items()}


def test_threshold_verdicts_pass_fail_and_not_measured() -> None:
    thresholds = Thresholds(
        min_busy_pct=50.0,
        min_gpu_util_pct=90.0,
        min_samples_per_s=10.0,
        max_data_wait_pct=10.0,
        max_fetch_latency_p99_ms=25.0,
    )
    metrics = _measured(
        busy_pct=60.0,
        samples_per_s=None,  # measured nothing: neither pass nor fail
        data_wait_pct=40.0,
        **{"gpu_util_pct[0]": 95.0, "gpu_util_pct[1]": 87.0, "gpu_util_pct[2]": None},
    )  # no fetch_latency_p99_ms at all (a backend that cannot time samples)
    verdicts = threshold_verdicts(thresholds, metrics)
    assert [v["threshold"] for v in verdicts] == [
        "min_busy_pct",
        "min_gpu_util_pct",
        "min_samples_per_s",
        "max_data_wait_pct",
        "max_fetch_latency_p99_ms",
    ]
    found = {v["metric"]: v for v in verdicts}
    assert found["busy_pct"] == {
        "threshold": "min_busy_pct",
        "metric": "busy_pct",
        "limit": 50.0,
        "value": 60.0,
        "pass": True,
    }
    assert found["gpu_util_pct"]["value"] == pytest.approx(91.0)  # mean of the measured GPUs
    assert found["gpu_util_pct"]["pass"] is True
    assert found["samples_per_s"]["value"] is None and found["samples_per_s"]["pass"] is None
    assert found["data_wait_pct"]["pass"] is False
    assert found["fetch_latency_p99_ms"]["value"] is None
    assert found["fetch_latency_p99_ms"]["pass"] is None


def test_threshold_limits_are_inclusive_and_unset_ones_left_out() -> None:
    assert threshold_verdicts(Thresholds(), _measured(busy_pct=1.0)) == []
    edge = threshold_verdicts(
        Thresholds(min_busy_pct=60.0, max_data_wait_pct=40.0),
        _measured(busy_pct=60.0, data_wait_pct=40.0),
    )
    assert [v["pass"] for v in edge] == [True, True]
    short = threshold_verdicts(
        Thresholds(min_busy_pct=60.0, max_data_wait_pct=40.0),
        _measured(busy_pct=59.9, data_wait_pct=40.1),
    )
    assert [v["pass"] for v in short] == [False, False]
    no_gpu = threshold_verdicts(Thresholds(min_gpu_util_pct=50.0), _measured(busy_pct=99.0))
    assert no_gpu == [
        {
            "threshold": "min_gpu_util_pct",
            "metric": "gpu_util_pct",
            "limit": 50.0,
            "value": None,
            "pass": None,
        }
    ]


def test_busy_vs_gpu_check_without_a_measured_step() -> None:
    check = busy_vs_gpu_check(None, 95.0)
    assert check["difference_pct_points"] is None
    assert check["verdict"] == "not available (no measured step)"


# --- the whole summary from every rank's records -----------------------------------------------


def _page_cache(condition: str = "cold", resident: float = 0.0) -> dict:
    return {
        "condition": condition,
        "requested": "cold",
        "evictions": 1 if condition == "cold" else 3,
        "dataset_files": 2,
        "dataset_bytes": 10_000_000,
        "resident_bytes_at_start": int(resident * 10_000_000),
        "resident_fraction_at_start": resident,
        "ram_bytes": 8_000_000_000,
        "seconds": 0.1,
    }


def _rank(rank: int, steps: pd.DataFrame, samples: pd.DataFrame, read: int | None):
    from harness.summary import RankRecords

    return RankRecords(
        rank=rank,
        steps=steps.drop(columns="rank").to_dict("records"),
        samples=samples.drop(columns="rank").to_dict("records"),
        errors=[("/data/bad.npy", "corrupt")] * rank,
        unavailable={"gpu": "not available: no NVML"},
        io_read_bytes=read,
    )


def _build(
    parts: list,
    page_cache: dict,
    complete: bool = True,
    reason: str | None = None,
    on_corrupt: str = "skip",
):
    from conftest import tiny_collage_scenario

    from harness.scenario import Scenario
    from harness.summary import build_summary

    scenario = Scenario.model_validate(
        tiny_collage_scenario(
            Path("/data"),
            thresholds={"min_busy_pct": 70.0, "max_data_wait_pct": 45.0},
            pipeline__on_corrupt=on_corrupt,
        )
    )
    return build_summary(
        run_id="run-1",
        scenario=scenario,
        emulation=None,
        parts=parts,
        page_cache=page_cache,
        dataset_manifest={"labels": "masks", "total_bytes": 10_000_000},
        cache_manifest=None,
        evaluation=None,
        complete=complete,
        reason=reason,
        finished="2026-12-02T10:00:00+0000",
    )


def test_build_summary_sums_ranks_and_judges_thresholds() -> None:
    from harness.summary_lines import summary_lines

    other = _steps(
        [(0, 0.0, 1.0, 0.5, 0.5, 2.2, 4, True), (1, 2.0, 4.0, 0.0, 2.0, 2.1, 4, False)], 1
    )
    other_samples = _samples([(2.5, 10.0, 4e6, 3e6, 1)], 1)
    # Each rank's process tree read part of what the host's pipeline asked for the first time:
    # 1 + 2 + 0 (+ the warm-up's 100) + 3 MB = 106 MB, read 60 + 46 MB.
    parts = [_rank(0, STEPS, SAMPLES, 60_000_000), _rank(1, other, other_samples, 46_000_000)]
    summary = _build(parts, _page_cache())
    assert summary.ranks == 2 and summary.complete and summary.reason is None
    assert summary.dlio is not None and summary.dlio.num_accelerators == 2  # DLIO's figures
    check = summary.cross_checks[0]
    assert check["read_bytes"] == 106_000_000 and check["first_requested_bytes"] == 106_000_000
    assert check["verdict"] == "agree within 5%" and check["ok"] is True
    assert summary.metrics["busy_pct"].value == pytest.approx((60.0 + 100.0) / 2)
    verdicts = {v.threshold: v.passed for v in summary.thresholds}
    assert verdicts == {"min_busy_pct": True, "max_data_wait_pct": True}  # 80 %, 20 %
    assert summary.corrupt_files == {"/data/bad.npy": 1}
    assert summary.collectors.unavailable == {
        "gpu": "not available: no NVML",
        "gpu[rank1]": "not available: no NVML",
    }
    lines = summary_lines(summary, Path("results/run-1"))
    assert lines[0] == "tiny-collage: complete -> results/run-1"
    assert "  threshold min_busy_pct 70.0: pass" in lines
    assert any(line.startswith("  check: bytes read") and "agree" in line for line in lines)


def test_build_summary_of_an_incomplete_partly_warm_run() -> None:
    from harness.summary_lines import summary_lines

    parts = [_rank(0, STEPS[STEPS["warmup"]], SAMPLES.iloc[:1], 1_000_000)]
    summary = _build(parts, _page_cache("partly warm", 0.4), False, "interrupted by SIGINT")
    assert not summary.complete and summary.reason == "interrupted by SIGINT"
    assert summary.metrics["busy_pct"].value is None
    assert [v.passed for v in summary.thresholds] == [None, None]  # not measured, not FAIL
    check = summary.cross_checks[0]
    assert check["page_cache"] == "partly warm" and check["expected"] is False
    assert check["ok"] is None  # a start that was not cold is not judged
    warnings = " | ".join(summary.warnings)
    assert "not a cold start: 40.0% of the dataset" in warnings and "3 eviction(s)" in warnings
    assert "no step after warm-up was measured" in warnings
    lines = summary_lines(summary, Path("r"))
    assert lines[0] == "tiny-collage: INCOMPLETE (interrupted by SIGINT) -> r"
    assert "  threshold min_busy_pct 70.0: not measured" in lines
    assert not any(line.startswith("  busy_pct ") for line in lines)  # no made-up number


def test_a_rank_whose_reads_were_not_counted_leaves_the_check_not_available() -> None:
    parts = [_rank(0, STEPS, SAMPLES, 60_000_000), _rank(1, STEPS.assign(rank=1), SAMPLES, None)]
    check = _build(parts, _page_cache()).cross_checks[0]
    assert check["read_bytes"] is None and check["verdict"] == "not available"


def test_bytes_cross_check_tells_other_files_from_read_ahead_on_the_dataset() -> None:
    # The tree read twice what the pipeline asked for, but the dataset's own pages that came
    # in (mincore) are what it asked for: the rest is other files, reported apart.
    other = bytes_cross_check(2_000_000, 1_000_000, "cold", dataset_read=1_030_000)
    assert other["ok"] is True and other["ratio"] == 2.0 and other["dataset_ratio"] == 1.03
    assert other["other_read_bytes"] == 970_000
    assert other["verdict"] == (
        "agree within 5% on the dataset's files (mincore: 1.03x); the run's processes also "
        "read 1.0 MB of other files (libraries paged in, file-system metadata)"
    )
    # Read-ahead on the dataset's files is a real disagreement.
    ahead = bytes_cross_check(1_500_000, 1_000_000, "cold", dataset_read=1_450_000)
    assert ahead["ok"] is False
    assert ahead["verdict"].endswith("; 1.45x of them on the dataset's own files (mincore)")
    # Fewer bytes read than asked for is never explained away by other files.
    memory = bytes_cross_check(500_000, 1_000_000, "cold", dataset_read=1_000_000)
    assert memory["ok"] is False and "came from memory" in memory["verdict"]
    from harness.summary import dataset_read_bytes

    cache = _page_cache()
    assert dataset_read_bytes(cache) is None  # not measured (older run folders)
    pages = {"resident_page_bytes_at_start": 4096, "resident_page_bytes_at_end": 7_004_096}
    assert dataset_read_bytes({**cache, **pages}) == 7_000_000
    warm = {**cache, **pages, "condition": "warm"}
    assert dataset_read_bytes(warm) is None


@pytest.mark.parametrize(
    ("on_corrupt", "expected"),
    [
        ("skip", "1 samples skipped from 1 corrupt file(s) (pipeline.on_corrupt is skip)"),
        ("fail", "1 corrupt sample(s) in 1 file(s) stopped the run (pipeline.on_corrupt is fail)"),
    ],
)
def test_the_corrupt_files_warning_says_the_scenario_s_own_setting(
    on_corrupt: str, expected: str
) -> None:
    parts = [_rank(0, STEPS, SAMPLES, 60_000_000), _rank(1, STEPS.assign(rank=1), SAMPLES, 1)]
    summary = _build(parts, _page_cache(), False, "corrupt", on_corrupt=on_corrupt)
    assert expected in summary.warnings
