"""The harness's unet3d-like MLPerf scenario side by side with DLIO, on the same npz files.

    python benchmarks/bench_mlperf.py [--dir DIR] [--files N] [--record-mb MB] [--stdev-mb MB]
                                      [--batch N] [--workers N] [--compute-ms MS] [--ranks N]
                                      [--no-control] [--strict]

The harness generates a records dataset shaped like scenarios/mlperf/unet3d_h100.yaml at small
scale (one record per npz file, ``numpy.savez`` of ``x``, as DLIO's NPZ reader loads it): by
default 1,024 files of 2 MiB +- 0.5 MiB, batch 7, 4 readers, 0.323 s of emulated compute per
step, one accelerator, so that a run of either tool reads every file once in about a minute on
2 cores. Then, page cache dropped before each:

  * DLIO through ``../shared/tools/dlio_peer.sh`` (bench_dlio.run_dlio, ``GENERATE=0``: its
    ``DATA_DIR/train`` is a link to the harness's ``records/`` folder), one epoch;
  * the harness: the same scenario with ``training.steps`` = files / (batch x ranks), a constant
    profile of the same step, ``warmup_steps: 1`` (DLIO leaves the first step out of its AU).

Control (``--no-control`` leaves it out): DLIO with its files in the page cache, same compute:
where even then its AU stays under 98 %, DLIO's own client is the bottleneck and the AU target
is not judged (the harness is expected to do better there, not the same).

Figures are DLIO 2.0.0's definitions on both sides: DLIO's summary.json, and the harness's
``dlio`` block of summary.json (``au_pct``, ``train_throughput_samples_per_second``,
``train_io_MB_per_second`` = samples/s x mean record length / 2^20). Targets: AU within 2 points
of DLIO's, samples/s at least DLIO's; ``--strict`` exits 1 on a missed one.

Not in ``make bench``: the two runs and the control take about 4 minutes, DLIO's install more
the first time; it needs root to drop the page cache (dlio_peer.sh's DROP_CACHES). Results:
docs/mlperf.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml
from bench_dlio import DLIO_PEER, run_dlio
from bench_emulated import REPO, harness, load, run_summary, write_scenario
from side_by_side import NAN, missed, mlperf_targets, ratio, table

UNET3D = REPO / "scenarios" / "mlperf" / "unet3d_h100.yaml"
MIB = 2**20


def records_scenario(data: Path, files: int, record_bytes: int, stdev_bytes: int,
                     batch: int, workers: int) -> dict:  # fmt: skip
    """unet3d_h100.yaml at small scale: ``files`` npz files of one record each."""
    scenario = yaml.safe_load(UNET3D.read_text())
    scenario["name"] = "bench-mlperf-unet3d"
    scenario["dataset"]["path"] = str(data / "unet3d")
    generate = scenario["dataset"]["generate"]
    generate.pop("size", None)
    generate |= {"files": files, "record_bytes": record_bytes, "record_bytes_stdev": stdev_bytes}
    scenario["pipeline"] |= {"batch_size": batch, "workers": workers, "page_cache": "cold"}
    scenario.pop("thresholds", None)
    return scenario


def constant_profile(folder: Path, batch: int, step_s: float) -> Path:
    """An MLPerf-style profile (workload, batch, a constant step) as DLIO sleeps it."""
    name = f"bench-mlperf-unet3d-b{batch}-{step_s * 1e3:g}ms"
    path = folder / f"{name}.json"
    document = {
        "format": "harness-profile",
        "format_version": 1,
        "name": name,
        "device": "none (written by benchmarks/bench_mlperf.py)",
        "settings": {
            "batch_size": batch,
            "crop": 8,
            "width": 0,
            "depth": 0,
            "classes": 1,
            "precision": "n/a",
            "optimizer": "none",
            "world": 1,
            "workload": "mlperf-unet3d",
        },
        "flops_per_batch": None,
        "mean_step_s": step_s,
        "step_s": [],
        "how": "a constant step time, as DLIO's computation_time (bench_mlperf.py)",
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def run_harness(work: Path, base: dict, *, ranks: int, steps: int, step_s: float) -> dict:
    scenario = json.loads(json.dumps(base))  # a deep copy
    scenario["training"] = {
        "compute": "emulated",
        "profile": str(constant_profile(work, base["pipeline"]["batch_size"], step_s)),
        "steps": steps,
        "warmup_steps": 1,
        "eval_samples": 0,
        "accelerators": ranks,
    }
    summary = run_summary(write_scenario(work, f"mlperf-r{ranks}", scenario), work / "results")
    block = summary.get("dlio") or {}
    read = summary["metrics"].get("read_MBps", {}).get("value")
    return {
        "au": block.get("au_pct") or NAN,
        "samples_per_s": block.get("train_throughput_samples_per_second") or NAN,
        "MiBps": block.get("train_io_MB_per_second") or NAN,
        "read_MBps": NAN if read is None else float(read),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "bench-mlperf")
    parser.add_argument("--files", type=int, default=1024, help="npz files, one record each")
    parser.add_argument("--record-mb", type=float, default=2.0, help="mean record, MiB")
    parser.add_argument("--stdev-mb", type=float, default=0.5, help="record stdev, MiB")
    parser.add_argument("--batch", type=int, default=7)
    parser.add_argument("--workers", type=int, default=4, help="readers per accelerator")
    parser.add_argument("--compute-ms", type=float, default=323.0, help="compute per step")
    parser.add_argument("--ranks", type=int, default=1, help="emulated accelerators")
    parser.add_argument("--dlio-peer", type=Path, default=DLIO_PEER)
    parser.add_argument("--no-control", action="store_true", help="skip DLIO warm")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    if not args.dlio_peer.is_file():
        sys.exit(f"error: {args.dlio_peer} not found (--dlio-peer PATH)")
    step_s, data = args.compute_ms / 1e3, args.dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    record_bytes, stdev_bytes = round(args.record_mb * MIB), round(args.stdev_mb * MIB)
    steps = args.files // (args.batch * args.ranks)
    files = samples = steps * args.batch * args.ranks  # whole steps: both tools read every file
    base = records_scenario(data, files, record_bytes, stdev_bytes, args.batch, args.workers)
    with tempfile.TemporaryDirectory(prefix="bench-mlperf-", dir=data) as folder:
        work = Path(folder)
        harness("datagen", str(write_scenario(work, "prepare", base)))
        records = data / "unet3d" / "records"
        peer_data = data / "dlio"  # DLIO reads DATA_DIR/train: the harness's files
        peer_data.mkdir(exist_ok=True)
        if not (peer_data / "train").is_symlink():
            (peer_data / "train").symlink_to(records, target_is_directory=True)
        (peer_data / "valid").mkdir(exist_ok=True)  # DLIO lists it even with no evaluation
        mean_bytes = sum(f.stat().st_size for f in records.glob("*.npz")) / files
        print(
            f"{files} npz files of {args.record_mb:g} +- {args.stdev_mb:g} MiB (mean file "
            f"{mean_bytes / 1e6:.2f} MB), batch {args.batch}, {args.workers} readers, "
            f"{args.compute_ms:g} ms per step, {args.ranks} accelerator(s): {steps} steps, "
            f"{samples} samples each; 100 % busy = {args.batch / step_s * args.ranks:.1f} "
            f"samples/s   {load()}",
            flush=True,
        )

        def dlio(cold: bool) -> dict:
            found = run_dlio(
                args.dlio_peer, peer_data, work / "dlio-out", ranks=args.ranks, samples=samples,
                record_bytes=record_bytes, batch=args.batch, workers=args.workers,
                compute_s=step_s, cold=cold, generate="0",
            )  # fmt: skip
            return {
                "au": found["dlio_au"],
                "samples_per_s": found["dlio_samples_per_s"],
                "MiBps": found["dlio_MiBps"],
                "read_MBps": NAN,  # DLIO does not measure what the kernel read
            }

        rows = {"DLIO 2.0.0, cold": dlio(cold=True)}
        print(f"  DLIO cold done   {load()}", flush=True)
        rows["harness, cold"] = run_harness(work, base, ranks=args.ranks, steps=steps,
                                            step_s=step_s)  # fmt: skip
        print(f"  harness cold done   {load()}", flush=True)
        if not args.no_control:
            rows["DLIO 2.0.0, warm (control)"] = dlio(cold=False)
            print(f"  DLIO warm done   {load()}", flush=True)

    print("\nby DLIO 2.0.0's definitions (MiB/s = samples/s x record length / 2^20; read: "
          "10^6 B/s the kernel read for the harness's process tree)")  # fmt: skip
    print(table(
        ["tool", "AU %", "samples/s", "MiB/s", "read MB/s"],
        [[n, r["au"], r["samples_per_s"], r["MiBps"], r["read_MBps"]] for n, r in rows.items()],
    ))  # fmt: skip
    ours, theirs = rows["harness, cold"], rows["DLIO 2.0.0, cold"]
    print("\nharness / DLIO (cold): " + ", ".join(
        f"{name} {ratio(ours[key], theirs[key]):.3f}"
        for name, key in (("AU", "au"), ("samples/s", "samples_per_s"), ("MiB/s", "MiBps"))
    ))  # fmt: skip
    warm = rows.get("DLIO 2.0.0, warm (control)", {}).get("au", NAN)
    targets = mlperf_targets(ours["au"], ours["samples_per_s"], theirs["au"],
                             theirs["samples_per_s"], warm)  # fmt: skip
    print("\ntargets")
    for target in targets:
        print(target.line())
    return 1 if args.strict and missed(targets) else 0


if __name__ == "__main__":
    raise SystemExit(main())
