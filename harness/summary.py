"""From a run's records to its summary: headline metrics, cross-checks, threshold verdicts.

Pure: tables and numbers in, a dictionary out; no clocks, no files, no devices. The measured
window is the steps after warm-up (of every rank); a run stopped before it has none, and its
metrics are then None ("not measured"), never zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.scenario import Thresholds
from harness.stats import metric, percentiles, ratio

BYTES_AGREEMENT = 0.05  # collector and pipeline byte counts must agree this well in a cold run


def measured_window(steps: pd.DataFrame) -> tuple[float, float] | None:
    measured = steps[~steps["warmup"]] if len(steps) else steps
    if measured.empty:
        return None
    return float(measured["t_start"].min()), float(measured["t_end"].max())


def loop_metrics(steps: pd.DataFrame, samples: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """samples/s, busy and data-wait %, fetch latency and batch wait percentiles, bytes asked."""
    window = measured_window(steps)
    metrics: dict[str, dict[str, Any]] = {
        "steps": metric(len(steps), "steps", "context"),
    }
    if window is None:
        for name, unit, direction in (
            ("samples_per_s", "samples/s", "higher"),
            ("busy_pct", "%", "higher"),
            ("data_wait_pct", "%", "lower"),
        ):
            metrics[name] = metric(None, unit, direction)
        return metrics
    measured = steps[~steps["warmup"]]
    start, end = window
    wall = end - start
    per_rank = measured.groupby("rank")
    busy = [
        g["compute_s"].sum() / (g["t_end"].max() - g["t_start"].min()) * 100 for _, g in per_rank
    ]
    wait = [g["wait_s"].sum() / (g["t_end"].max() - g["t_start"].min()) * 100 for _, g in per_rank]
    metrics["measured_steps"] = metric(len(measured), "steps", "context")
    metrics["samples_per_s"] = metric(measured["samples"].sum() / wall, "samples/s", "higher")
    metrics["busy_pct"] = metric(float(np.mean(busy)), "%", "higher")
    metrics["data_wait_pct"] = metric(float(np.mean(wait)), "%", "lower")
    if len(busy) > 1:
        for rank, value in zip(per_rank.groups, busy, strict=True):
            metrics[f"busy_pct[rank{rank}]"] = metric(value, "%", "higher")
    consumed = samples.merge(measured[["rank", "step"]], on=["rank", "step"])
    for label, value in percentiles(consumed["latency_ms"] if len(consumed) else []).items():
        metrics[f"fetch_latency_{label}_ms"] = metric(value, "ms", "lower")
    for label, value in percentiles(measured["wait_s"] * 1000, (50.0, 99.0)).items():
        metrics[f"batch_wait_{label}_ms"] = metric(value, "ms", "lower")
    fetched = samples[(samples["t_end"] >= start) & (samples["t_end"] <= end)]
    requested = fetched["requested_bytes"].sum(min_count=1)  # NaN: the backend cannot count
    metrics["requested_MBps"] = metric(
        None if pd.isna(requested) else float(requested) / wall / 1e6, "MB/s", "context"
    )
    metrics["loss_first"] = metric(float(steps["loss"].iloc[0]), "", "lower")
    metrics["loss_last"] = metric(float(steps["loss"].tail(5).mean()), "", "lower")
    return metrics


def bytes_cross_check(read_bytes: int | None, requested_bytes: int | None, condition: str) -> dict:
    """Bytes the kernel says the run's processes read vs bytes the pipeline asked for the first
    time (page by page, per process: a page asked for again is served by the page cache), over
    the whole run. In a cold run they agree; far fewer read bytes mean the page cache served
    the data (the run measured memory, not storage), far more mean read-ahead or other reads."""
    share = ratio(read_bytes, requested_bytes)
    if share is None:
        verdict = "not available"
    elif abs(share - 1) <= BYTES_AGREEMENT:
        verdict = f"agree within {BYTES_AGREEMENT:.0%}"
    elif share < 1:
        verdict = f"storage served {share:.0%} of the bytes asked for: the rest came from memory"
    else:
        verdict = f"storage read {share:.2f}x the bytes asked for (read-ahead or other reads)"
    return {
        "name": "bytes read (collector) vs bytes first requested (pipeline)",
        "read_bytes": read_bytes,
        "first_requested_bytes": requested_bytes,
        "ratio": None if share is None else round(share, 4),
        "page_cache": condition,
        "verdict": verdict,
        "expected": condition == "cold",
        "ok": None if share is None or condition != "cold" else abs(share - 1) <= BYTES_AGREEMENT,
    }


def busy_vs_gpu_check(busy_pct: float | None, gpu_util: list[float]) -> dict:
    """The loop's busy % against NVML utilisation (what MLPerf computes vs what the GPU says)."""
    mean_util = float(np.mean(gpu_util)) if gpu_util else None
    difference = None if busy_pct is None or mean_util is None else mean_util - busy_pct
    return {
        "name": "loop busy % vs NVML GPU utilisation %",
        "busy_pct": busy_pct,
        "gpu_util_pct": mean_util,
        "difference_pct_points": None if difference is None else round(difference, 2),
        "verdict": "not available (no GPU)"
        if mean_util is None
        else f"NVML reads {difference:+.1f} points against the loop's busy %",
    }


def threshold_verdicts(thresholds: Thresholds, metrics: dict[str, dict]) -> list[dict[str, Any]]:
    """Each threshold the scenario sets, with the measured value and pass/fail."""
    checks = (
        ("min_busy_pct", "busy_pct", "min"),
        ("min_gpu_util_pct", "gpu_util_pct", "min"),
        ("min_samples_per_s", "samples_per_s", "min"),
        ("max_data_wait_pct", "data_wait_pct", "max"),
        ("max_fetch_latency_p99_ms", "fetch_latency_p99_ms", "max"),
    )
    verdicts = []
    for field, name, kind in checks:
        limit = getattr(thresholds, field)
        if limit is None:
            continue
        if name == "gpu_util_pct":
            gpus = [
                m["value"]
                for key, m in metrics.items()
                if key.startswith("gpu_util_pct[") and m["value"] is not None
            ]
            value = float(np.mean(gpus)) if gpus else None
        else:
            value = metrics.get(name, {}).get("value")
        passed = None if value is None else (value >= limit if kind == "min" else value <= limit)
        verdicts.append(
            {"threshold": field, "metric": name, "limit": limit, "value": value, "pass": passed}
        )
    return verdicts
