"""Performance check of the report: a 3-scenario suite of 10-minute runs sampled at 10 Hz.

    python benchmarks/bench_report.py [--dir DIR] [--minutes M] [--strict]

Writes synthetic but realistically shaped results (the study's three experiments on an 8-GPU
machine: ~15 steps/s of batch 16 when fed, a frame cache, a decoded run that stalls, 8 GPUs and
16 cores sampled at 10 Hz; about 6,000 samples per series and 140,000 fetch latencies per run)
with the harness's own writers, then times ``write_report`` on them. Target: under 20 s on 2
cores. Long series are thinned for drawing only, so the time must not grow with run length
beyond reading and sorting the data.

``--strict`` exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness import results
from harness.stats import metric, window_mean
from harness.summary import loop_metrics, threshold_verdicts

TARGET_S = 20.0
GPUS = 8
CORES = 16
BATCH = 16

# name, kind, mode, compute s/step, mean wait s/step, fetch latency median ms
SCENARIOS = (
    ("paper-image-collage", "image_collage", None, 0.0675, 0.002, 9.0),
    ("paper-video-decoded", "video", "decoded", 0.0675, 0.049, 135.0),
    ("paper-video-cached", "video", "cached", 0.0675, 0.0015, 4.0),
)


def _steps(rng: np.random.Generator, seconds: float, compute: float, wait: float) -> pd.DataFrame:
    count = int(seconds / (compute + wait)) + 1
    waits = rng.gamma(2.0, wait / 2.0, count)
    computes = compute * rng.normal(1.0, 0.02, count).clip(0.9, 1.1)
    ends = np.cumsum(waits + computes)
    keep = ends <= seconds
    waits, computes, ends = waits[keep], computes[keep], ends[keep]
    n = ends.size
    loss = 1.8 * np.exp(-np.arange(n) / (n / 4)) + 0.35 + rng.normal(0, 0.03, n)
    return pd.DataFrame(
        {
            "step": np.arange(n),
            "t_start": ends - waits - computes,
            "t_end": ends,
            "wait_s": waits,
            "compute_s": computes,
            "loss": loss,
            "samples": np.full(n, BATCH),
            "warmup": np.arange(n) < 20,
            "rank": np.zeros(n, dtype=np.int64),
        }
    )


def _samples(rng: np.random.Generator, steps: pd.DataFrame, median_ms: float) -> pd.DataFrame:
    n = len(steps) * BATCH
    step = np.repeat(steps["step"].to_numpy(), BATCH)
    latency = rng.lognormal(np.log(median_ms), 0.45, n)
    size = rng.integers(2_500_000, 3_500_000, n)
    return pd.DataFrame(
        {
            "t_end": np.repeat(steps["t_start"].to_numpy(), BATCH) - rng.uniform(0, 0.05, n),
            "latency_ms": latency,
            "requested_bytes": size,
            "first_time_bytes": size,
            "step": step,
            "rank": np.zeros(n, dtype=np.int64),
        }
    )


def _series(rng: np.random.Generator, seconds: float, hz: float, busy: float) -> dict:
    t = np.arange(0, seconds, 1 / hz)
    n = t.size
    mbps = np.clip(rng.normal(busy * 720.0, busy * 60.0, n), 0, None)  # ~BATCH x 3 MB x 15 steps/s
    read_bytes = np.cumsum(mbps / hz * 1e6)
    io = pd.DataFrame(
        {
            "t": t,
            "read_bytes": read_bytes,
            "rchar": read_bytes * 1.01,
            "read_MBps": mbps,
            "rchar_MBps": mbps * 1.01,
            "device_read_bytes": read_bytes,
            "device_read_MBps": mbps,
            "procs": np.full(n, 9.0),
            "rank": np.zeros(n, dtype=np.int64),
        }
    )
    cores = {
        f"cpu_core_pct[{c}]": np.clip(rng.normal(60 + 35 * (1 - busy), 10, n), 0, 100)
        for c in range(CORES)
    }
    tree = np.clip(rng.normal(900 + 500 * (1 - busy), 80, n), 0, None)
    cpu = pd.DataFrame(
        {
            "t": t,
            "cpu_pct": tree,
            "cpu_s": np.cumsum(tree / 100 / hz),
            "cpu_cores_pct": np.mean(list(cores.values()), axis=0),
            "rss_MiB": np.full(n, 9000.0),
            "procs": np.full(n, 9.0),
            **cores,
            "rank": np.zeros(n, dtype=np.int64),
        }
    )
    gpu = pd.DataFrame(
        {
            "t": np.repeat(t, GPUS),
            "gpu": np.tile(np.arange(GPUS), n),
            "gpu_util_pct": np.clip(rng.normal(busy * 100, 6, n * GPUS), 0, 100),
            "mem_util_pct": np.clip(rng.normal(busy * 40, 5, n * GPUS), 0, 100),
            "mem_used_MiB": np.full(n * GPUS, 30000.0),
            "pcie_rx_MBps": rng.normal(900, 50, n * GPUS),
            "pcie_tx_MBps": rng.normal(40, 5, n * GPUS),
            "sm_clock_MHz": np.full(n * GPUS, 1980.0),
            "power_W": rng.normal(450, 20, n * GPUS),
            "dec_util_pct": np.zeros(n * GPUS),
            "rank": np.zeros(n * GPUS, dtype=np.int64),
        }
    )
    return {"io": io, "cpu": cpu, "gpu": gpu}


def _hardware() -> dict:
    return {
        "hostname": "dgx-bench-01",
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "cpu_logical_cores": CORES,
        "cpu_cores_available": CORES,
        "ram_total_bytes": 2_000_000_000_000,
        "ram_total_GiB": 1862.65,
        "gpu_count": GPUS,
        "gpus": [
            {"index": i, "name": "NVIDIA H200", "memory_total_GiB": 139.8, "uuid": f"GPU-{i}"}
            for i in range(GPUS)
        ],
        "gpu_driver_version": "580.65.06",
        "storage_fs_type": "nfs4",
        "storage_nfs_server": "flash-array-01",
    }


def write_run(root: Path, index: int, spec: tuple, seconds: float, hz: float) -> Path:
    """One synthetic run folder, written with the harness's own writers."""
    name, kind, mode, compute, wait, median = spec
    rng = np.random.default_rng(index)
    folder = root / f"20260101T00000{index}Z-{name}-bench{index}"
    folder.mkdir(parents=True)
    steps = _steps(rng, seconds, compute, wait)
    samples = _samples(rng, steps, median)
    busy = compute / (compute + wait)
    series = _series(rng, seconds, hz, busy)
    scenario = {
        "name": name,
        "dataset": {"kind": kind, "path": f"/mnt/nfs/{name}"},
        "pipeline": {"backend": "torch", "mode": mode, "page_cache": "cold", "batch_size": BATCH},
        "training": {"steps": None, "duration_s": seconds, "warmup_steps": 20},
        "collectors": {"rate_hz": hz, "enabled": ["gpu", "io", "cpu", "latency"]},
        "thresholds": {"min_gpu_util_pct": 90.0, "max_data_wait_pct": 10.0},
    }
    results.write_manifest_file(
        folder,
        results.RunManifest.model_validate(
            {
                "run_id": folder.name,
                "scenario": scenario,
                "command": ["harness", "suite", "scenarios/paper/suite.yaml"],
                "started": "2026-01-01T00:00:00+0000",
                "ranks": 1,
                "device": "cuda:0",
                "precision": "bf16",
                "hardware": _hardware(),
                "software": {"os": "Ubuntu 24.04", "torch": "2.11.0", "harness": "0.1.0"},
            }
        ),
    )
    results.write_table(folder, "steps", steps)
    results.write_table(folder, "samples", samples)
    for key, frame in series.items():
        results.write_table(folder, f"series_{key}", frame)
    metrics = loop_metrics(steps, samples)
    measured = steps[~steps["warmup"]]
    start, end = float(measured["t_start"].min()), float(measured["t_end"].max())
    for gpu, part in series["gpu"].groupby("gpu"):
        value = window_mean(part["t"], part["gpu_util_pct"], start, end)
        metrics[f"gpu_util_pct[{gpu}]"] = metric(value, "%", "higher")
    io, cpu = series["io"], series["cpu"]
    metrics["read_MBps"] = metric(
        window_mean(io["t"], io["read_MBps"], start, end), "MB/s", "context"
    )
    metrics["cpu_pct"] = metric(
        window_mean(cpu["t"], cpu["cpu_pct"], start, end), "% of a core", "context"
    )
    metrics["cpu_cores_pct"] = metric(
        window_mean(cpu["t"], cpu["cpu_cores_pct"], start, end), "%", "context"
    )
    metrics["storage_bytes"] = metric(50e9 if kind == "video" else 99e9, "B", "context")
    if mode == "cached":
        metrics["cache_bytes"] = metric(640e9, "B", "context")
        metrics["expansion"] = metric(12.8, "x", "context")
    metrics["miou"] = metric(0.71, "", "higher")
    metrics["miou_chance"] = metric(0.12, "", "context")

    class Limits:
        min_busy_pct = None
        min_gpu_util_pct = 90.0
        min_samples_per_s = None
        max_data_wait_pct = 10.0
        max_fetch_latency_p99_ms = None

    results.write_summary(
        folder,
        results.SummaryFile.model_validate(
            {
                "run_id": folder.name,
                "scenario": name,
                "complete": True,
                "reason": None,
                "ranks": 1,
                "page_cache": {"condition": "cold"},
                "metrics": metrics,
                "cross_checks": [],
                "thresholds": threshold_verdicts(Limits(), metrics),  # type: ignore[arg-type]
                "collectors": {"rate_hz": hz, "unavailable": {}},
                "warnings": [],
            }
        ),
    )
    return folder


def write_suite(root: Path, minutes: float = 10.0, hz: float = 10.0) -> list[Path]:
    """The study's three experiments as synthetic run folders under ``root``."""
    return [write_run(root, index, spec, minutes * 60, hz) for index, spec in enumerate(SCENARIOS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    from harness.report import write_report

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        folders = write_suite(root / "results", args.minutes, args.hz)
        written = time.perf_counter() - started
        rows = {f.name: len(pd.read_parquet(f / "samples.parquet")) for f in folders}
        print(
            f"synthetic suite: {len(folders)} runs of {args.minutes:g} min at {args.hz:g} Hz "
            f"({sum(rows.values()):,} fetch latencies), written in {written:.1f} s"
        )
        started = time.perf_counter()
        html, pdf = write_report([root / "results"], root / "report")
        elapsed = time.perf_counter() - started
        print(
            f"report: {elapsed:.2f} s (target < {TARGET_S:g} s); "
            f"html {html.stat().st_size / 1e6:.2f} MB, pdf {pdf.stat().st_size / 1e6:.2f} MB"
        )
    ok = elapsed < TARGET_S
    print("PASS" if ok else "MISS: the report took longer than the target")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
