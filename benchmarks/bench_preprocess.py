"""The emulated client beside the real one on this machine: does emulated preprocessing load the
storage as the real pipeline does, for a fraction of the client's CPU?

    python benchmarks/bench_preprocess.py [--dir DIR] [--accelerators 1,2] [--steps N]
                                          [--capacity [--cap-mbps MB/S] [--server AxC]
                                                      [--capacity-profile h200|cpu]]
                                          [--strict]

The quick cached scenario (scenarios/quick/video_cached.yaml: random frames of a JPEG frame
cache, page cache cold) with emulated compute at the shipped CPU profile
(``cpu2-unet-w16-128-fp32-b8``), at each accelerator count, run twice:

  * real: the DataLoader workers decode, crop and collate each frame on this machine's CPU;
  * emulated: ``pipeline.preprocess: emulated`` from a profile calibrated here first
    (``harness calibrate --preprocess``), ``preprocess_cores`` = this machine's cores: the same
    reads, then a drawn wait per sample instead of the decode.

Printed for both: busy %, read MB/s (10^6 B/s the kernel read for the run), the run's CPU per
sample (cpu_pct / samples_per_s, core-ms) and its data workers' (pipeline_cpu_pct / samples_per_s:
the client's preprocessing, which the emulation replaces; the ranks' loops and the collectors
cost the same either way). Targets: busy % within 3 points, read MB/s within 5 %, the emulated
client's data workers' CPU per sample at most a fifth of the real one's.

``--capacity`` (root, cgroup-v1 blkio, losetup and mkfs.ext4; frames of at least 512 px:
``--size 1920x1080``): a capacity search at the H200 profile (``h200-unet-w64-512-bf16-b16``,
its own model, crop 512 and batch 16, so its steps unscaled) with emulated preprocessing
calibrated here at that crop, ``--preprocess-cores`` emulated cores (default 40: the client is
not the limit), 6 workers per accelerator, on an ext4 loop device whose reads are capped at
``--cap-mbps`` (blkio, as tests/test_capacity.py does), the hand calculation beside it: cap /
(bytes a sample costs x batch / step time). Targets: the answer within 1 of it, the limiter the
storage. ``--server 8x40`` searches in whole servers (the study's DGX-1), the hand calculation
then in accelerators, rounded down to whole servers. ``--capacity-profile cpu`` searches at the
CPU profile instead (crop 128, batch 8, 2 workers an accelerator): eight H200-class ranks a
server (1,900 samples/s) are more than this 2-core client runs, eight of this machine's are not.

Not in ``make bench``: the four runs and the calibration take about 4 minutes on 2 cores (the
real runs decode every frame); ``--capacity`` a few minutes more. Results: docs/emulation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_emulated import (
    REPO,
    emulated,
    harness,
    load,
    quick_scenario,
    run_summary,
    value,
    write_scenario,
)
from side_by_side import (
    Target,
    capacity_by_hand,
    cpu_per_sample,
    missed,
    preprocess_targets,
    ratio,
    table,
)

CPU_PROFILE = "cpu2-unet-w16-128-fp32-b8"
H200_PROFILE = "h200-unet-w64-512-bf16-b16"
H200_CROP, H200_BATCH = 512, 16  # the profile's settings: a run at them uses its steps unscaled


@dataclass(frozen=True)
class SearchProfile:
    """An accelerator profile for ``--capacity`` with the settings it was measured at (a run at
    them uses its steps unscaled) and the DataLoader workers each accelerator gets."""

    name: str
    crop: int
    batch: int
    model: dict[str, int]
    workers: int


SEARCH_PROFILES = {
    "h200": SearchProfile(H200_PROFILE, H200_CROP, H200_BATCH, {"width": 64, "depth": 4}, 6),
    # 16 samples/s an accelerator: eight a server (the DGX-1 shape) and three servers are within
    # this 2-core client's reach, which eight H200-class ranks (1,900 samples/s) are not
    "cpu": SearchProfile(CPU_PROFILE, 128, 8, {"width": 16, "depth": 3}, 2),
}
BLKIO = Path("/sys/fs/cgroup/blkio")


def figures(summary: dict) -> dict[str, float]:
    return {
        "busy": value(summary, "busy_pct"),
        "read_MBps": value(summary, "read_MBps"),
        "samples_per_s": value(summary, "samples_per_s"),
        "cpu_pct": value(summary, "cpu_pct"),
        "cpu_ms_per_sample": cpu_per_sample(
            value(summary, "cpu_pct"), value(summary, "samples_per_s")
        ),
        "pipeline_cpu_pct": value(summary, "pipeline_cpu_pct"),
        "pipeline_ms_per_sample": cpu_per_sample(
            value(summary, "pipeline_cpu_pct"), value(summary, "samples_per_s")
        ),
    }


def with_emulated_preprocess(scenario: dict, profile: Path, cores: int) -> dict:
    scenario = json.loads(json.dumps(scenario))  # a deep copy
    scenario["pipeline"] |= {
        "preprocess": "emulated",
        "preprocess_profile": str(profile),
        "preprocess_cores": cores,
    }
    return scenario


def compare(work: Path, base: dict, accelerators: list[int], steps: int) -> list[Target]:
    profile = work / "preprocess.json"
    harness("calibrate", "--preprocess", str(write_scenario(work, "calibrate", base)),
            "--out", str(profile))  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"preprocessing profile calibrated here: {profile}; preprocess_cores {cores}", flush=True)
    rows, targets = [], []
    for count in accelerators:
        real = emulated(base, Path(CPU_PROFILE), steps, accelerators=count)
        runs = {"real": real, "emulated": with_emulated_preprocess(real, profile, cores)}
        found = {}
        for kind, scenario in runs.items():
            path = write_scenario(work, f"{kind}-a{count}", scenario)
            found[kind] = figures(run_summary(path, work / "results"))
            print(f"  {count} accelerator(s), {kind} preprocessing done   {load()}", flush=True)
        for kind in ("real", "emulated"):
            f = found[kind]
            rows.append([f"{count} acc., {kind}", f["busy"], f["read_MBps"], f["samples_per_s"],
                         f["cpu_pct"], f["cpu_ms_per_sample"], f["pipeline_cpu_pct"],
                         f["pipeline_ms_per_sample"]])  # fmt: skip
        rows.append([
            f"{count} acc., emulated / real",
            *(ratio(found["emulated"][k], found["real"][k])
              for k in ("busy", "read_MBps", "samples_per_s", "cpu_pct", "cpu_ms_per_sample",
                        "pipeline_cpu_pct", "pipeline_ms_per_sample")),
        ])  # fmt: skip
        targets += [
            Target(f"{count} acc.: {t.name}", t.met, t.found, t.why)
            for t in preprocess_targets(found["real"], found["emulated"])
        ]
    size = "{width}x{height}".format(**base["dataset"]["generate"])
    print(f"\nquick cached scenario ({size} frames) at {CPU_PROFILE}, page cache cold; CPU: the "
          "run's processes "
          "(% of a core); CPU per sample = cpu % / 100 / samples/s, core-ms; data workers: "
          "the DataLoader workers alone (pipeline_cpu_pct)")  # fmt: skip
    print(table(["run", "busy %", "read MB/s", "samples/s", "CPU %", "CPU ms/sample",
                 "workers CPU %", "workers ms/sample"], rows, 2))  # fmt: skip
    return targets


@contextmanager
def throttled_disk(folder: Path, size: str = "2G") -> Iterator[tuple[Path, Path, str]]:
    """(mount point, a blkio cgroup, device numbers): an ext4 loop device, as the capacity tests
    make it; removed after."""
    if os.geteuid() != 0 or not (BLKIO / "blkio.throttle.read_bps_device").exists():
        sys.exit("--capacity needs root and the cgroup-v1 blkio controller")
    if shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        sys.exit("--capacity needs losetup and mkfs.ext4")
    image, mount = folder / "disk.img", folder / "store"
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    cgroup = BLKIO / f"bench-preprocess-{os.getpid()}"
    mount.mkdir()
    try:
        subprocess.run(["mount", device, str(mount)], check=True)
        cgroup.mkdir()
        rdev = os.stat(device).st_rdev
        yield mount, cgroup, f"{os.major(rdev)}:{os.minor(rdev)}"
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)
        if cgroup.exists():
            cgroup.rmdir()


def capacity(
    work: Path,
    base: dict,
    cap_MBps: float,
    server: str | None,
    cores: int,
    frames: int,
    search: SearchProfile,
) -> list[Target]:
    """A search at ``search``'s profile as measured (its model, crop and batch: no scaling), on
    the same frames, copied to a throttled loop device, each accelerator's preprocessing
    emulated from a profile calibrated here at that crop."""
    generate = base["dataset"]["generate"]
    if min(generate["width"], generate["height"]) < search.crop:
        sys.exit(f"--capacity needs frames of at least {search.crop} px (the profile's crop): "
                 "--size 1920x1080")  # fmt: skip
    with throttled_disk(work, "4G") as (mount, cgroup, numbers):
        moved = quick_scenario("video_cached", mount)
        # more frames than the probes read: a repeat comes from the page cache, not the disk
        videos = -(-frames // generate["frames"])
        moved["dataset"]["generate"] = {**generate, "videos": videos}
        moved["pipeline"] |= {
            "crop": search.crop,
            "batch_size": search.batch,
            "workers": search.workers,
        }
        moved["training"]["model"] = dict(search.model)
        prepare = write_scenario(work, "capacity-prepare", moved)
        harness("datagen", str(prepare))
        harness("cache", str(prepare))
        profile = work / "preprocess-capacity.json"
        harness("calibrate", "--preprocess", str(prepare), "--out", str(profile))
        scenario = with_emulated_preprocess(emulated(moved, Path(search.name), 60), profile, cores)
        file = write_scenario(work, "capacity", scenario)
        out = work / "capacity.json"
        (cgroup / "blkio.throttle.read_bps_device").write_text(f"{numbers} {int(cap_MBps * 1e6)}")
        command = (  # inside the cgroup: every rank and worker the search starts is capped
            f"echo $$ > {cgroup}/cgroup.procs && exec {sys.executable} -m harness capacity "
            f"{file} --results {work / 'results'} --json {out}"
            + (f" --server {server}" if server else "")
        )
        print(f"capacity search, reads capped at {cap_MBps:g} MB/s   {load()}", flush=True)
        done = subprocess.run(["sh", "-c", command], cwd=REPO, text=True, stdout=subprocess.PIPE)
        print(done.stdout, flush=True)
        if done.returncode != 0:
            sys.exit("harness capacity failed (its lines above)")
    (entry,) = json.loads(out.read_text())["scenarios"]
    first = entry["probes"][0]["metrics"]
    sample_bytes = first["read_MBps"] * 1e6 / first["samples_per_s"]
    step_s = entry["profile"]["profile_mean_step_s"] * entry["profile"]["scale"]
    batch = search.batch
    by_hand = capacity_by_hand(cap_MBps, sample_bytes, batch, step_s)
    answer = entry["max_accelerators"]
    servers = f" ({entry.get('max_servers')} servers)" if server else ""
    print(
        f"\ncapacity at {search.name} (step {step_s * 1e3:.1f} ms, batch {batch}), "
        f"emulated preprocessing, reads capped at {cap_MBps:g} MB/s: {answer} accelerators"
        f"{servers}, limiter {entry.get('limiter')}\nby hand: {cap_MBps:g} MB/s / "
        f"({sample_bytes / 1e3:.1f} kB a sample x {batch} / {step_s:.4f} s) = {by_hand}"
    )
    # with a server shape the search counts whole servers: the hand answer rounds down to them
    per_server = int(server.split("x")[0]) if server else 1
    expected = by_hand // per_server * per_server
    return [
        Target(
            "capacity within 1 of the hand calculation",
            abs(answer - expected) <= per_server,
            f"{answer} vs {expected}",
        ),
        Target(
            "limiter is the storage", entry.get("limiter") == "storage", str(entry.get("limiter"))
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "bench-preprocess")
    parser.add_argument("--accelerators", default="1,2", help="counts, comma-separated")
    parser.add_argument("--steps", type=int, default=60, help="steps per run (5 warm-up)")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (smoke tests)")
    parser.add_argument(
        "--size",
        default=None,
        help="the videos' WxH (default the quick scenario's 640x360; 1920x1080: the study's "
        "frames, whose decode is what an emulated client saves)",
    )
    parser.add_argument("--capacity", action="store_true", help="the capacity part (root)")
    parser.add_argument("--cap-mbps", type=float, default=20.0, help="--capacity: read cap")
    parser.add_argument("--server", default=None, help="--capacity: a server shape, AxC")
    parser.add_argument(
        "--capacity-profile",
        choices=sorted(SEARCH_PROFILES),
        default="h200",
        help="--capacity: the accelerator profile (cpu: this machine's, 16 samples/s each, so "
        "that whole DGX-1-shaped servers fit this client)",
    )
    parser.add_argument(
        "--capacity-frames",
        type=int,
        default=7200,
        help="--capacity: frames of its dataset (in videos of --frames each): enough distinct "
        "frames that a probe's random ones seldom repeat",
    )
    parser.add_argument(
        "--preprocess-cores",
        type=int,
        default=40,
        help="--capacity: the emulated client's cores (default a DGX-1's 40)",
    )
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    data = args.dir.resolve()
    if args.size:  # data of each size kept apart
        data = data.with_name(f"{data.name}-{args.size}")
    data.mkdir(parents=True, exist_ok=True)
    base = quick_scenario("video_cached", data)
    if args.frames:
        base["dataset"]["generate"]["frames"] = args.frames
    if args.size:
        width, _, height = args.size.partition("x")
        base["dataset"]["generate"] |= {"width": int(width), "height": int(height)}
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-", dir=data) as folder:
        work = Path(folder)
        prepare = write_scenario(work, "prepare", base)
        harness("datagen", str(prepare))
        harness("cache", str(prepare))
        accelerators = [int(n) for n in args.accelerators.split(",") if n]
        targets = compare(work, base, accelerators, args.steps)
        if args.capacity:
            targets += capacity(
                work,
                base,
                args.cap_mbps,
                args.server,
                args.preprocess_cores,
                args.capacity_frames,
                SEARCH_PROFILES[args.capacity_profile],
            )
    print("\ntargets")
    for target in targets:
        print(target.line())
    return 1 if args.strict and missed(targets) else 0


if __name__ == "__main__":
    raise SystemExit(main())
