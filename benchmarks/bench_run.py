"""Performance checks of the run engine, as ratios measured side by side in one run.

    python benchmarks/bench_run.py [--dir DIR] [--rounds N] [--strict]

  1. collectors on vs off, interleaved: samples/s lost to the collectors (target: <= 1 %), and
     the CPU their sampler threads use at 10 Hz (target: <= 1 % of one core);
  2. cold runs: bytes the kernel reports the run read vs bytes the pipeline first asked for
     (target: within 5 %), for raw image crops and for a raw frame cache;
  3. the pipeline's reads vs fio on the same files, same parallelism, cold cache (target:
     >= 90 %): whole cached-frame files vs `fio --rw=read --bs=4k` (buffered: read-ahead makes
     the device requests large; fio skips files smaller than its block), memory-mapped image
     crops (one page
     fault, one 4 KiB read, at a time per worker) vs `fio --rw=randread --bs=4k --ioengine=psync`.

Everything runs through the real CLI or the real pipeline classes, on files on the disk under
``--dir``. ``--strict`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness import pagecache
from harness.data.cache import read_cache_manifest
from harness.data.manifest import require_complete
from harness.pipeline.plan import SamplePlan
from harness.pipeline.sources import build_source
from harness.pipeline.torch_loader import RankSampler, SegmentationSamples, build_loader
from harness.scenario import load_scenario

WORKERS = 2


def harness(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"benchmark step failed: harness {' '.join(args)}\n{done.stderr.strip()}")


def write_scenario(folder: Path, name: str, scenario: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def collage_scenario(work: Path, side: int, images: int, steps: int) -> dict:
    return {
        "name": f"bench-collage-{side}",
        "dataset": {
            "kind": "image_collage",
            "path": str(work / f"collage-{side}"),
            "generate": {"images": images, "width": side, "height": side, "objects_per_image": 100},
        },
        "pipeline": {"workers": 1, "batch_size": 8, "crop": 128},
        "training": {
            "steps": steps,
            "warmup_steps": 3,
            "model": {"width": 8, "depth": 2},
            "eval_samples": 0,
        },
    }


def cached_scenario(work: Path, steps: int) -> dict:
    return {
        "name": "bench-cached",
        "dataset": {
            "kind": "video",
            "path": str(work / "videos"),
            "generate": {
                "videos": 2,
                "frames": 1200,
                "width": 640,
                "height": 360,
                "gop": 60,
                "bitrate_kbps": 800,
            },
        },
        "pipeline": {
            "mode": "cached",
            "workers": WORKERS,
            "batch_size": 8,
            "crop": 128,
            "cache": {"path": str(work / "cache"), "format": "npy"},
        },
        "training": {
            "steps": steps,
            "warmup_steps": 3,
            "model": {"width": 8, "depth": 2},
            "eval_samples": 0,
        },
    }


def run_and_summarise(scenario: Path, results: Path, *overrides: str) -> dict:
    before = set(results.iterdir()) if results.exists() else set()
    harness(
        "run",
        str(scenario),
        "--results",
        str(results),
        "--quiet",
        *[item for o in overrides for item in ("-o", o)],
    )
    (folder,) = set(results.iterdir()) - before
    return json.loads((folder / "summary.json").read_text())


def bench_collectors(work: Path, rounds: int) -> tuple[float, float]:
    path = write_scenario(work, "overhead", collage_scenario(work, 2048, 8, 40))
    harness("datagen", str(path))
    results = work / "results-overhead"
    on, off, sampler_share = [], [], []
    for round_index in range(rounds):
        with_collectors = run_and_summarise(path, results)
        without = run_and_summarise(path, results, "collectors.enabled=[]")
        on.append(with_collectors["metrics"]["samples_per_s"]["value"])
        off.append(without["metrics"]["samples_per_s"]["value"])
        steps = with_collectors["metrics"]["steps"]["value"]
        seconds = steps * 8 / with_collectors["metrics"]["samples_per_s"]["value"]
        cpu = sum(with_collectors["collectors"]["sampler_cpu_s"].values())
        sampler_share.append(cpu / seconds * 100)
        print(
            f"  round {round_index + 1}: on {on[-1]:6.2f} samples/s  off {off[-1]:6.2f} "
            f"samples/s  samplers {sampler_share[-1]:.2f} % of a core"
        )
    loss = (1 - statistics.median(on) / statistics.median(off)) * 100
    return loss, statistics.median(sampler_share)


def bench_bytes(work: Path) -> list[tuple[str, float]]:
    out = []
    collage = write_scenario(work, "bytes-collage", collage_scenario(work, 4096, 6, 40))
    cached = write_scenario(work, "bytes-cached", cached_scenario(work, 40))
    for path in (collage, cached):
        harness("datagen", str(path))
        harness("cache", str(path))
        summary = run_and_summarise(path, work / "results-bytes")
        check = summary["cross_checks"][0]
        print(
            f"  {summary['scenario']}: read {check['read_bytes'] / 1e6:.1f} MB, first "
            f"requested {check['first_requested_bytes'] / 1e6:.1f} MB: {check['verdict']}"
        )
        out.append((summary["scenario"], check["ratio"]))
    return out


def pipeline_read_rate(path: Path, samples: int) -> float:
    """MB/s of bytes first asked for by the pipeline alone (no training), cold, WORKERS workers."""
    scenario = load_scenario(path).scenario
    manifest = require_complete(Path(scenario.dataset.path))
    cache = read_cache_manifest(scenario) if scenario.pipeline.mode == "cached" else None
    source = build_source(scenario, manifest, cache)
    plan = SamplePlan(source.files, scenario.pipeline.crop, 1, True)
    pagecache.evict(source.data_files())
    dataset = SegmentationSamples(source, plan, scenario.pipeline.crop, "fail")
    batch = 8
    loader = build_loader(
        dataset,
        RankSampler(0, 1, batch, samples // batch),
        batch_size=batch,
        workers=WORKERS,
        prefetch_factor=4,
        pin_memory=False,
    )
    started = time.perf_counter()
    first_time = sum(int(b.first_time_bytes.sum()) for b in loader)
    return first_time / (time.perf_counter() - started) / 1e6


def fio_rate(files: list[Path], rw: str, bs: str, io_size: int | None) -> float:
    """MB/s of fio over ``files`` split among WORKERS jobs, psync, buffered, cold. Many small
    files (a frame cache) are given as one folder per job (one video each: WORKERS videos)."""
    pagecache.evict(files)
    groups = [files[i::WORKERS] for i in range(WORKERS)]
    job = [
        "[global]",
        f"rw={rw}",
        f"bs={bs}",
        "ioengine=psync",
        "direct=0",
        "invalidate=1",
        "group_reporting=1",
        "randrepeat=0",
    ]
    if io_size:
        job.append(f"io_size={io_size // WORKERS}")
    for index, group in enumerate(groups):
        names = ":".join(str(p) for p in group)
        if len(names) < 4000:  # fio's limit on one value is 4096 characters
            job += [f"[job{index}]", f"filename={names}"]
    if len(job) == 8 + bool(io_size):  # too many files: one job per top folder (per video)
        folders = sorted({p.parent.parent for p in files})
        for index, folder in enumerate(folders):
            job += [f"[job{index}]", f"opendir={folder}"]
    with tempfile.NamedTemporaryFile("w", suffix=".fio", delete=False) as handle:
        handle.write("\n".join(job) + "\n")
    report = Path(handle.name).with_suffix(".json")
    subprocess.run(
        ["fio", "--output-format=json", f"--output={report}", handle.name],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(handle.name).unlink()
    text = report.read_text()  # fio may print notes ("opendir added N files") before the JSON
    read = json.loads(text[text.index("{") :])["jobs"][0]["read"]
    report.unlink()
    return read["io_bytes"] / (read["runtime"] / 1000) / 1e6


def bench_fio(work: Path, rounds: int) -> list[tuple[str, float]]:
    out = []
    cached = work / "bytes-cached.yaml"
    collage = work / "bytes-collage.yaml"
    cache_files = sorted((work / "cache").glob("*/*/*.npy"))
    images = sorted((work / "collage-4096/images").glob("*.npy"))
    for name, path, files, rw, bs in (
        ("cached frames (whole files)", cached, cache_files, "read", "4k"),
        ("image crops (4 KiB page faults)", collage, images, "randread", "4k"),
    ):
        ratios = []
        for round_index in range(rounds):
            pipeline = pipeline_read_rate(path, 400)
            reference = fio_rate(files, rw, bs, None if rw == "read" else 64 << 20)
            ratios.append(pipeline / reference)
            print(
                f"  {name}, round {round_index + 1}: pipeline {pipeline:8.1f} MB/s   fio "
                f"{reference:8.1f} MB/s   ratio {ratios[-1]:.2f}"
            )
        out.append((name, statistics.median(ratios)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("data"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    if shutil.which("fio") is None:
        sys.exit("error: fio is needed for this benchmark (apt-get install fio)")
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-run-", dir=args.dir) as folder:
        work = Path(folder)
        print("1. collectors on vs off (interleaved)")
        loss, share = bench_collectors(work, args.rounds)
        rows.append(("samples/s lost to collectors (%)", loss, 1.0, "max"))
        rows.append(("sampler threads, % of one core", share, 1.0, "max"))
        print("2. bytes read vs bytes first requested, cold runs")
        for name, ratio in bench_bytes(work):
            rows.append((f"read / requested, {name}", abs(ratio - 1) * 100, 5.0, "max"))
        print(f"3. pipeline reads vs fio, {WORKERS} workers, cold")
        for name, ratio in bench_fio(work, args.rounds):
            rows.append((f"pipeline / fio, {name}", ratio, 0.90, "min"))
    print("\nsummary (median of rounds)")
    missed = 0
    for name, value, target, kind in rows:
        ok = value <= target if kind == "max" else value >= target
        missed += not ok
        sign = "<=" if kind == "max" else ">="
        print(f"  {name:52s} {value:8.2f}  {sign} {target:<5g} {'ok' if ok else 'MISSED'}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
