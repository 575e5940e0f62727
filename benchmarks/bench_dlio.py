"""Emulated accelerators side by side with DLIO (the MLPerf Storage tool), measured in one run.

    python benchmarks/bench_dlio.py [--dir DIR] [--ranks 1,2] [--samples N] [--batch N]
                                    [--workers N] [--compute-ms MS] [--strict]

Both tools on the same disk, page cache dropped, with the same number of samples, batch, readers
per rank (DataLoader workers), ranks (emulated accelerators) and constant compute time per step:

  * DLIO through ``../shared/tools/dlio_peer.sh`` (dlio-benchmark in its own venv, OpenMPI
    ranks, PyTorch reader, one npz file per sample of ``RECORD_BYTES``, one epoch);
  * the harness: ``harness run`` with ``training.compute: emulated``, ``accelerators`` = ranks,
    a hand-written profile of the same constant step, on the npy frame cache of
    benchmarks/bench_emulated.py (generated there on first use), ``warmup_steps: 1`` (DLIO leaves
    the first step out of its AU).

``RECORD_BYTES`` is the harness's sample: one frame file plus one mask file of the npy cache (the
harness opens two files per sample, DLIO one). MB/s is DLIO's own figure for both tools:
samples/s x RECORD_BYTES / 2^20. DLIO's samples/s counts every step and the loader's start over
the epoch's whole wall time; its "steady" figure here leaves out the first step, as its AU does,
and is computed from its own per-step records (``<rank>_output.json``). A second table puts
DLIO's own summary beside the harness's ``dlio`` block (summary.json: AU, samples/s and MiB/s
by DLIO 2.0.0's definitions), like with like.

Controls (``--no-control`` leaves them out): DLIO with its files in the page cache, same compute
(is its AU limited by the storage or by its own client?), and both tools cold with no compute
(DLIO ``COMPUTE_S=0``, the harness a 0.1 ms profile): how many samples/s each client delivers
from this disk at most. Targets: the harness's busy % within 2 points of DLIO's AU, and its
samples/s at least DLIO's. Results: docs/emulation.md. ``--strict`` exits 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_emulated import (
    NEAR_ZERO_S,
    REPO,
    emulated,
    harness,
    load,
    npy_cache_scenario,
    run_summary,
    training_files,
    value,
    write_profile,
    write_scenario,
)

DLIO_PEER = REPO.parent / "shared" / "tools" / "dlio_peer.sh"


def run_dlio(
    peer: Path, data: Path, out: Path, *, ranks: int, samples: int, record_bytes: int,
    batch: int, workers: int, compute_s: float, cold: bool, generate: str = "auto",
) -> dict:  # fmt: skip
    """One DLIO epoch through dlio_peer.sh; its summary and per-rank step records.
    ``generate``: dlio_peer.sh's GENERATE ("0": DLIO reads the npz files already in
    ``data/train``, e.g. the harness's, bench_mlperf.py)."""
    environment = os.environ | {
        "DATA_DIR": str(data),
        "OUT_DIR": str(out),
        "NUM_FILES": str(samples),
        "RECORD_BYTES": str(record_bytes),
        "BATCH": str(batch),
        "THREADS": str(workers),
        "COMPUTE_S": f"{compute_s:g}",
        "EPOCHS": "1",
        "NP": str(ranks),
        "DROP_CACHES": "1" if cold else "0",
        "GENERATE": generate,
    }
    if not cold:  # every file read once first, so that the epoch reads memory
        from harness import pagecache

        files = sorted((data / "train").glob("*.npz"))
        if len(files) == samples:  # else dlio_peer.sh generates them anew (and they stay warm)
            pagecache.warm(files)
    done = subprocess.run(["bash", str(peer)], env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"dlio_peer.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    metric = json.loads((out / "train" / "summary.json").read_text())["metric"]
    steady = 0.0 if compute_s > 0 else float("nan")
    for rank in range(ranks if compute_s > 0 else 0):
        epoch = json.loads((out / "train" / f"{rank}_output.json").read_text())["1"]
        compute = epoch["compute"]["block1"]
        au = epoch["au"]["block1"] / 100
        # DLIO's AU is sum(compute[1:]) / (block wall - first step): that wall, over the
        # steps after the first, gives this rank's samples/s on the same window.
        steady += (len(compute) - 1) * batch / (sum(compute[1:]) / au)
    shutil.rmtree(out, ignore_errors=True)
    au = metric["train_au_mean_percentage"] if compute_s > 0 else float("nan")
    return {
        "busy": au,
        "samples_per_s": metric["train_throughput_mean_samples_per_second"],
        "steady": steady,
        "MiBps": metric["train_io_mean_MB_per_second"],
        # DLIO's own figures, for the table by DLIO's definitions
        "dlio_au": au,
        "dlio_samples_per_s": metric["train_throughput_mean_samples_per_second"],
        "dlio_MiBps": metric["train_io_mean_MB_per_second"],
        "au_source": "nominal",
    }


def run_harness(
    work: Path, base: dict, *, ranks: int, samples: int, workers: int, compute_s: float
) -> dict:
    steps = samples // (base["pipeline"]["batch_size"] * ranks)
    profile = write_profile(work, base, compute_s)
    scenario = emulated(base, profile, steps, accelerators=ranks)
    scenario["training"]["warmup_steps"] = 1
    scenario["pipeline"]["workers"] = workers
    scenario["pipeline"]["page_cache"] = "cold"
    path = write_scenario(work, f"dlio-side-r{ranks}", scenario)
    summary = run_summary(path, work / "results")
    block = summary.get("dlio") or {}  # DLIO's definitions (harness/dlio_metrics.py)
    nan = float("nan")
    return {
        "dlio_au": (block.get("au_pct") or nan) if compute_s > NEAR_ZERO_S else nan,
        "dlio_samples_per_s": block.get("train_throughput_samples_per_second") or nan,
        "dlio_MiBps": block.get("train_io_MB_per_second") or nan,
        "au_source": block.get("au_source") or "-",
        "busy": value(summary, "busy_pct") if compute_s > NEAR_ZERO_S else float("nan"),
        "samples_per_s": value(summary, "samples_per_s"),
        "steady": value(summary, "samples_per_s"),  # the warm-up step is left out already
        "read": value(summary, "read_MBps"),
        "requested": value(summary, "requested_MBps"),
        "barrier": value(summary, "barrier_pct"),
    }


def number(x: float, width: int) -> str:
    return f"{'-':>{width}s}" if x != x else f"{x:{width}.1f}"  # NaN: not applicable


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "bench-emulated")
    parser.add_argument("--ranks", default="1,2", help="rank counts, comma-separated")
    parser.add_argument("--samples", type=int, default=2048, help="samples per run (all ranks)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="readers per rank")
    parser.add_argument("--compute-ms", type=float, default=30.0, help="compute per step")
    parser.add_argument("--dlio-peer", type=Path, default=DLIO_PEER)
    parser.add_argument("--no-control", action="store_true", help="skip the control runs")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    if not args.dlio_peer.is_file():
        sys.exit(f"error: {args.dlio_peer} not found (--dlio-peer PATH)")
    ranks_list = [int(r) for r in args.ranks.split(",")]
    compute_s = args.compute_ms / 1000
    data = args.dir.resolve()
    data.mkdir(parents=True, exist_ok=True)

    base = npy_cache_scenario(data, 6, 2400)  # bench_emulated.py's defaults: one cache for both
    base["pipeline"]["batch_size"] = args.batch
    # (tool, condition, ranks, compute s, cold): the comparison, then the controls
    cases = [
        (tool, "cold", ranks, compute_s, True)
        for ranks in ranks_list
        for tool in ("DLIO", "harness")
    ]
    if not args.no_control:
        cases += [("DLIO", "warm", ranks, compute_s, False) for ranks in ranks_list]
        cases += [
            ("DLIO", "cold, no compute", 1, 0.0, True),
            ("harness", "cold, no compute", 1, NEAR_ZERO_S, True),
        ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dlio-", dir=data) as folder:
        work = Path(folder)
        prepare = write_scenario(work, "prepare", base)
        harness("datagen", str(prepare))
        harness("cache", str(prepare))
        pairs, _ = training_files(prepare)
        frame_bytes, mask_bytes = pairs[0][0].stat().st_size, pairs[0][1].stat().st_size
        record = frame_bytes + mask_bytes
        print(
            f"samples {args.samples} per run, batch {args.batch}, {args.workers} readers per "
            f"rank, compute {args.compute_ms:g} ms per step (100 % busy = "
            f"{args.batch / compute_s:.1f} samples/s per rank), one epoch / run\n"
            f"RECORD_BYTES {record} = one frame file ({frame_bytes} B) + one mask file "
            f"({mask_bytes} B) of the harness's npy cache: the harness opens two files per "
            "sample, DLIO one npz file\nthe harness draws its samples at random from "
            f"{len(pairs)} training frames (a few repeat and are read from memory); DLIO reads "
            "each of its files once",
            flush=True,
        )
        for tool, condition, ranks, step_s, cold in cases:
            if tool == "DLIO":
                found = run_dlio(
                    args.dlio_peer, data / "dlio", work / "dlio-out", ranks=ranks,
                    samples=args.samples, record_bytes=record, batch=args.batch,
                    workers=args.workers, compute_s=step_s, cold=cold,
                )  # fmt: skip
                found["tool"] = "DLIO 2.0.0"
            else:
                found = run_harness(
                    work, base, ranks=ranks, samples=args.samples, workers=args.workers,
                    compute_s=step_s,
                )  # fmt: skip
                found["MiBps"] = found["samples_per_s"] * record / 2**20
                found["tool"] = "harness"
            found |= {"condition": condition, "ranks": ranks, "compute_ms": step_s * 1e3}
            rows.append(found)
            extra = (
                f"; read {found['read']:.1f} MB/s of {found['requested']:.1f} MB/s asked, "
                f"barrier {found['barrier']:.1f} %"
                if tool == "harness"
                else ""
            )
            print(
                f"  {found['tool']}, {condition}, {ranks} rank(s): AU/busy "
                f"{number(found['busy'], 0)} %, {found['samples_per_s']:.1f} samples/s "
                f"(steady {number(found['steady'], 0)}){extra}   {load()}",
                flush=True,
            )

    print(
        f"\nside by side (MB/s = samples/s x {record} / 2^20, DLIO's definition; steady = "
        "samples/s without the first step, as AU counts)"
    )
    print(
        f"  {'tool':11s} {'condition':17s} {'ranks':>5s} {'compute ms':>10s} {'AU/busy %':>9s} "
        f"{'samples/s':>9s} {'steady':>7s} {'MB/s':>7s}"
    )
    for row in rows:
        print(
            f"  {row['tool']:11s} {row['condition']:17s} {row['ranks']:5d} "
            f"{row['compute_ms']:10g} {number(row['busy'], 9)} {row['samples_per_s']:9.1f} "
            f"{number(row['steady'], 7)} {row['MiBps']:7.1f}"
        )
    print(
        "\nby DLIO's definitions (DLIO: its summary.json; harness: summary.json's dlio block): "
        "AU = compute of steps 2.. / (wall - step 1), samples/s over every step, MiB/s = "
        "samples/s x record length / 2^20 (harness: mean bytes asked per sample)"
    )
    print(
        f"  {'tool':11s} {'condition':17s} {'ranks':>5s} {'AU %':>6s} {'AU from':>8s} "
        f"{'samples/s':>9s} {'MiB/s':>7s}"
    )
    for row in rows:
        print(
            f"  {row['tool']:11s} {row['condition']:17s} {row['ranks']:5d} "
            f"{number(row['dlio_au'], 6)} {row['au_source']:>8s} "
            f"{number(row['dlio_samples_per_s'], 9)} {number(row['dlio_MiBps'], 7)}"
        )
    print("\ntargets")
    missed = 0
    for ranks in ranks_list:
        pair = [r for r in rows if r["ranks"] == ranks and r["condition"] == "cold"]
        dlio, ours = (next(r for r in pair if r["tool"] == t) for t in ("DLIO 2.0.0", "harness"))
        for name, ok, text in (
            (
                "busy % within 2 points of DLIO's AU",
                abs(ours["busy"] - dlio["busy"]) <= 2,
                f"{ours['busy']:.1f} vs {dlio['busy']:.1f}",
            ),
            (
                "samples/s at least DLIO's",
                ours["samples_per_s"] >= dlio["samples_per_s"],
                f"{ours['samples_per_s']:.1f} vs {dlio['samples_per_s']:.1f}",
            ),
        ):
            missed += not ok
            print(f"  {ranks} rank(s): {name:38s} {text:>20s}  {'ok' if ok else 'MISSED'}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
