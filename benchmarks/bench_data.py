"""Performance checks of data generation and the frame cache, as ratios measured side by side.

    python benchmarks/bench_data.py [--dir DIR] [--rounds N] [--strict]

The machine may be shared and noisy, so every target is a ratio against a reference measured in
the same run on the same disk and cores, alternating the two, and the median ratio is reported:

  1. raw (npy) collage generation, flushed to disk, vs `dd conv=fdatasync` of the same bytes
     (target: >= 50 % of dd's speed);
  2. video generation: CPU time of the generating processes / (wall time x cores given)
     (target: every core used, >= 85 %);
  3. frame-cache build vs `ffmpeg -threads N -i VIDEO -f null -` on the same videos and cores
     (target: >= 80 %), and, for context, vs ffmpeg decoding to raw RGB files on the same disk
     (the same bytes the npy cache writes).

``--strict`` exits 1 when a target is missed (for CI gates on a dedicated machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness.data.parallel import available_cpus


def run(command: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(command)}\n{done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def write_scenario(folder: Path, name: str, scenario: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def dd_rate(work: Path, size: int, direct: bool = False) -> float:
    """dd's write speed (B/s): through the page cache ending with fdatasync (the yardstick), or
    with O_DIRECT (the disk without the kernel's page-cache copy, for context)."""
    target = work / "dd.bin"
    block = 4 << 20
    wall, _ = run(
        [
            "dd",
            "if=/dev/zero",
            f"of={target}",
            f"bs={block}",
            f"count={max(1, size // block)}",
            "oflag=direct" if direct else "conv=fdatasync",
            "status=none",
        ]
    )
    target.unlink()
    return max(1, size // block) * block / wall


def collage_dataset(root: Path, images: int, side: int, cores: int) -> dict:
    """A raw (npy) collage of ``images`` square images of ``side`` pixels, drawn by ``cores``
    processes."""
    return {
        "kind": "image_collage",
        "path": str(root),
        "generate": {
            "images": images,
            "width": side,
            "height": side,
            "objects_per_image": 200,
            "format": "npy",
            "workers": cores,
        },
    }


def bench_raw_generation(work: Path, rounds: int, cores: int) -> float:
    images, side = 12, 4096  # 12 x 50.3 MB = 604 MB of raw pixels
    total_bytes = images * side * side * 3
    ratios = []
    for round_index in range(rounds):
        root = work / f"collage-{round_index}"
        scenario = {
            "name": "bench-collage",
            "dataset": collage_dataset(root, images, side, cores),
            "training": {"steps": 10},
        }
        path = write_scenario(work, f"collage-{round_index}", scenario)
        dd = dd_rate(work, total_bytes) / 1e6
        gen_wall, _ = run(harness("datagen", str(path)))
        gen_rate = total_bytes / gen_wall / 1e6
        ratios.append(gen_rate / dd)
        print(
            f"  round {round_index + 1}: dd {dd:7.1f} MB/s   datagen npy {gen_rate:7.1f} MB/s"
            f"   ratio {gen_rate / dd:.2f}"
        )
        shutil.rmtree(root)
    return statistics.median(ratios)


def video_scenario(root: Path, cache: Path, cores: int) -> dict:
    return {
        "name": "bench-video",
        "dataset": {
            "kind": "video",
            "path": str(root),
            "generate": {
                "videos": 4,
                "frames": 600,
                "width": 640,
                "height": 360,
                "gop": 150,
                "crf": 23,
                "unique": "full",  # every frame encoded: the cores' share is the point here
                "workers": cores,
            },
        },
        "pipeline": {
            "mode": "cached",
            "crop": 128,
            "cache": {"path": str(cache), "format": "npy", "workers": cores},
        },
        "training": {"steps": 10},
    }


def bench_video_generation(work: Path, cores: int) -> tuple[float, Path]:
    path = write_scenario(work, "video", video_scenario(work / "videos", work / "cache", cores))
    wall, cpu = run(harness("datagen", str(path)))
    share = cpu / (wall * cores)
    print(
        f"  video generation: {wall:.1f} s wall, {cpu:.1f} s CPU on {cores} cores: "
        f"{share:.0%} of the cores busy"
    )
    return share, path


def bench_cache_build(work: Path, scenario: Path, cores: int, rounds: int) -> tuple[float, float]:
    manifest = json.loads((work / "videos/dataset.json").read_text())
    videos = [work / "videos" / record["path"] for record in manifest["files"]]
    frames = manifest["total_frames"]
    null_ratios, raw_ratios = [], []
    for round_index in range(rounds):
        ffmpeg_null = sum(
            run(["ffmpeg", "-v", "error", "-threads", str(cores), "-i", str(v), "-f", "null", "-"])[
                0
            ]
            for v in videos
        )
        raw_dir = work / "raw"
        raw_dir.mkdir(exist_ok=True)
        ffmpeg_raw = sum(
            run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-threads",
                    str(cores),
                    "-i",
                    str(v),
                    "-pix_fmt",
                    "rgb24",
                    "-f",
                    "rawvideo",
                    str(raw_dir / f"{v.stem}.rgb"),
                ]
            )[0]
            for v in videos
        )
        ffmpeg_raw += run(["sync"])[0]
        shutil.rmtree(raw_dir)
        shutil.rmtree(work / "cache", ignore_errors=True)
        cache_wall, _ = run(harness("cache", str(scenario)))
        null_ratio, raw_ratio = ffmpeg_null / cache_wall, ffmpeg_raw / cache_wall
        null_ratios.append(null_ratio)
        raw_ratios.append(raw_ratio)
        print(
            f"  round {round_index + 1}: ffmpeg -f null {frames / ffmpeg_null:7.0f} frames/s   "
            f"ffmpeg to raw RGB files {frames / ffmpeg_raw:6.0f} frames/s   harness cache "
            f"{frames / cache_wall:6.0f} frames/s   ratios {null_ratio:.2f} / {raw_ratio:.2f}"
        )
    return statistics.median(null_ratios), statistics.median(raw_ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("data"),
        help="folder on the disk to measure (default: ./data)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    for tool in ("dd", "ffmpeg"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is needed for this benchmark (apt-get install {tool})")
    cores = available_cpus()
    args.dir.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-", dir=args.dir) as folder:
        work = Path(folder)
        print(f"benchmarking in {work} on {cores} cores ({os.uname().nodename})")
        print("1. raw collage generation vs dd conv=fdatasync (same bytes, same disk)")
        ratio = bench_raw_generation(work, args.rounds, cores)
        results.append(("npy generation / dd write speed", ratio, 0.50))
        print("2. video generation core usage")
        share, scenario = bench_video_generation(work, cores)
        results.append(("video generation: share of cores busy", share, 0.85))
        print(f"3. frame cache build vs ffmpeg, {cores} threads, same videos")
        null_ratio, raw_ratio = bench_cache_build(work, scenario, cores, args.rounds)
        results.append(("cache build / ffmpeg -f null decode speed", null_ratio, 0.80))
        results.append(("cache build / ffmpeg decode to raw RGB files", raw_ratio, None))
    print("\nsummary (median of rounds)")
    missed = 0
    for name, value, target in results:
        verdict = "context" if target is None else ("ok" if value >= target else "MISSED")
        missed += verdict == "MISSED"
        goal = f">= {target:.2f}" if target is not None else ""
        print(f"  {name:48s} {value:6.2f}  {goal:8s} {verdict}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
