"""Performance checks of emulated accelerators, as ratios measured side by side in one run.

    python benchmarks/bench_emulated.py [--dir DIR] [--rounds N] [--parts abc] [--strict]

  a. the harness is not the bottleneck: with a near-zero compute profile (0.1 ms a step) on data
     in the page cache (``pipeline.page_cache: warm``), the samples/s of one emulated accelerator
     (``harness run``, collectors on) vs the same pipeline iterated without the training loop
     around it (built as harness/run/ builds it: ``prepare_run`` then ``backend.batches``),
     for the quick collage (npy crops) and the quick JPEG frame cache, 1 and 2 workers
     (target: >= 0.90);
  b. storage-bound: an npy frame cache of several GB, page cache dropped, the read rate of an
     emulated run with the same near-zero profile (``read_MBps``: the host's process tree,
     /proc/<pid>/io read_bytes) vs ``fio --ioengine=psync --rw=read --bs=<file size>`` over the
     same files with ``numjobs`` = ranks x workers (target: >= 90 %), for several worker and
     accelerator counts; for context, the device's ceiling (``fio --direct=1
     --ioengine=libaio --iodepth=32``): bs=128k over the frame files (bs=1M reads none of them:
     every file is smaller than 1 MiB) and bs=1M over one 2 GiB file beside them; and, for one
     accelerator, where the pipeline's workers spend their time (on a CPU, waiting for one, on
     I/O).
  c. busy-% floors of a 20 ms accelerator (moved here from tests/test_emulated.py, which checks
     the accounting only): on a small collage in the page cache the loop is >= 95 % busy (the
     best of the rounds: noise only lowers busy %); random frames of long-GOP video decoded on
     the fly starve it (busy <= 60 %) where the frame cache of the same video does not (>= 30
     points more).

A frame cache sample is two files, a frame and its mask, of two sizes, and fio reads a file
smaller than its block not at all and a larger one only in whole blocks, so fio runs once over
the frames (bs = frame file size) and once over the masks (bs = mask file size), each job over
its own share of the files (hard links in a folder per job, so that no two jobs read the same
file), and the psync figure the pipeline is held to is the rate of reading one frame and one
mask per sample at those two rates.

Data is generated under ``--dir`` on first use and kept (later runs find it up to date); the
storage under test is the disk that holds ``--dir``. Results: docs/emulation.md.
``--strict`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
QUICK = REPO / "scenarios" / "quick"
NEAR_ZERO_S = 0.0001  # the near-zero compute profile: 0.1 ms a step
FIO_PSYNC_BYTES = 2 << 30  # bytes each psync fio run reads, over all its jobs
FIO_CEILING_BYTES = 2 << 30


# --- helpers ------------------------------------------------------------------------------------


def harness(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"benchmark step failed: harness {' '.join(args)}\n{done.stderr.strip()}")


def write_scenario(folder: Path, name: str, scenario: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def write_profile(folder: Path, scenario: dict, step_s: float) -> Path:
    """A hand-written profile of a constant step, for the scenario's batch, crop and model."""
    pipeline, model = scenario["pipeline"], scenario["training"]["model"]
    name = f"flat-{step_s * 1e3:g}ms-b{pipeline['batch_size']}-c{pipeline['crop']}"
    path = folder / f"{name}-w{model['width']}-d{model['depth']}.json"
    document = {
        "format": "harness-profile",
        "format_version": 1,
        "name": name,
        "device": "none (written by benchmarks/bench_emulated.py)",
        "settings": {
            "batch_size": pipeline["batch_size"],
            "crop": pipeline["crop"],
            "width": model["width"],
            "depth": model["depth"],
            "classes": 5,
            "precision": "fp32",
            "optimizer": "adamw",
            "world": 1,
        },
        "flops_per_batch": None,
        "mean_step_s": step_s,
        "step_s": [step_s],
        "how": "a constant step time written by hand for a benchmark",
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def emulated(scenario: dict, profile: Path, steps: int, **training: object) -> dict:
    scenario = json.loads(json.dumps(scenario))  # a deep copy
    scenario["training"] = {
        "model": scenario["training"]["model"],
        "steps": steps,
        "warmup_steps": 5,
        "eval_samples": 0,
        "compute": "emulated",
        "profile": str(profile),
        **training,
    }
    scenario.pop("thresholds", None)
    return scenario


def run_summary(scenario: Path, results: Path) -> dict:
    """``harness run`` once; the run's summary.json (the run folder is removed)."""
    results.mkdir(parents=True, exist_ok=True)
    before = set(results.iterdir())
    harness("run", str(scenario), "--results", str(results), "--quiet")
    (folder,) = set(results.iterdir()) - before
    summary = json.loads((folder / "summary.json").read_text())
    shutil.rmtree(folder)
    if not summary.get("complete"):
        sys.exit(f"benchmark run incomplete: {summary.get('reason')}")
    return summary


def load() -> str:
    """What else ran on the cores: the 1-minute load average and, where the kernel reports it,
    the share of the last 10 s in which some runnable task waited for a CPU (PSI)."""
    text = f"load {Path('/proc/loadavg').read_text().split()[0]}"
    try:
        some = Path("/proc/pressure/cpu").read_text().split()[1].removeprefix("avg10=")
    except (OSError, IndexError):
        return text
    return f"{text}, CPU pressure {some} %"


def value(summary: dict, name: str) -> float:
    found = summary["metrics"].get(name, {}).get("value")
    return float("nan") if found is None else float(found)


# --- a. the harness is not the bottleneck -------------------------------------------------------


def bare_pipeline(scenario_file: str) -> dict:
    """The scenario's pipeline without the training loop: built as harness/run/ builds it, its
    page cache prepared the same way, iterated in this process; samples/s over the batches after
    the warm-up ones, timed like the run's measured window (from the moment the last warm-up
    batch arrived to the moment the last batch did).

    Also where the DataLoader workers' time went over that window, per sample, from their
    /proc/<pid>/schedstat (time on a CPU, time runnable but waiting for one; the rest is
    blocked on I/O or idle), read up to the last batch but one (the workers exit after it)."""
    import torch

    from harness.run import prepare_page_cache, prepare_run
    from harness.scenario import load_scenario
    from harness.train.distributed import Ranks

    loaded = load_scenario(scenario_file)
    prepared = prepare_run(loaded)
    prepare_page_cache(prepared, act=True)
    torch.set_num_threads(1)  # as an emulated run does
    warmup, steps = loaded.scenario.training.warmup_steps, loaded.scenario.training.steps
    samples, started = 0, time.monotonic()
    first = last = None
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as folder:
        batches = prepared.backend.batches(prepared.batch_request(Ranks(), Path(folder)))
        iterator = iter(batches)
        try:
            for index, batch in enumerate(iterator):
                if index + 1 == warmup:
                    started = time.monotonic()
                    first = worker_schedstat(batches)
                elif index + 1 > warmup:
                    samples += len(batch)
                if index + 2 == steps:
                    last = worker_schedstat(batches), samples, time.monotonic()
            ended = time.monotonic()
        finally:
            iterator.close()  # type: ignore[attr-defined]  # every backend's batches close
    out = {"samples_per_s": samples / (ended - started), "samples": samples}
    if first and last and last[0] and last[1]:
        (cpu_ns, wait_ns, workers), counted, at = last
        cpu_ns -= first[0]
        wait_ns -= first[1]
        wall_ms = (at - started) * 1e3 * workers
        out |= {
            "worker_cpu_ms": cpu_ns / 1e6 / counted,
            "worker_runqueue_ms": wait_ns / 1e6 / counted,
            "worker_other_ms": (wall_ms - (cpu_ns + wait_ns) / 1e6) / counted,
        }
    return out


def worker_schedstat(batches: object) -> tuple[int, int, int] | None:
    """(ns on a CPU, ns waiting for one, workers) summed over the DataLoader's workers; None
    where the backend has none (or keeps them elsewhere)."""
    loader_iterator = getattr(batches, "_source", None)
    workers = getattr(loader_iterator, "_workers", None)
    if not workers:
        return None
    cpu = wait = 0
    for worker in workers:
        try:
            fields = Path(f"/proc/{worker.pid}/schedstat").read_text().split()
        except OSError:
            return None
        cpu, wait = cpu + int(fields[0]), wait + int(fields[1])
    return cpu, wait, len(workers)


def bare_run(scenario: Path) -> dict:
    """``bare_pipeline`` in a fresh process, as ``harness run`` is one."""
    done = subprocess.run(
        [sys.executable, __file__, "--bare", str(scenario)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"benchmark step failed: bare pipeline {scenario}\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bare_rate(scenario: Path) -> float:
    return bare_run(scenario)["samples_per_s"]


def quick_scenario(name: str, data: Path) -> dict:
    """A shipped quick scenario with its data under ``data``."""
    scenario = yaml.safe_load((QUICK / f"{name}.yaml").read_text())
    scenario["dataset"]["path"] = str(data / Path(scenario["dataset"]["path"]).name)
    if scenario["pipeline"].get("cache"):
        scenario["pipeline"]["cache"]["path"] = str(data / "frame-cache")
    return scenario


def bench_not_the_bottleneck(work: Path, data: Path, rounds: int) -> list[dict]:
    rows = []
    for label, name, steps in (
        ("quick collage, npy crops", "image_collage", 400),
        ("quick frame cache, JPEG", "video_cached", 200),
    ):
        base = quick_scenario(name, data)
        profile = write_profile(work, base, NEAR_ZERO_S)
        base["pipeline"]["page_cache"] = "warm"
        prepare = write_scenario(work, f"a-{name}", emulated(base, profile, steps))
        harness("datagen", str(prepare))
        if base["pipeline"].get("mode") == "cached":
            harness("cache", str(prepare))
        for workers in (1, 2):
            scenario = emulated(base, profile, steps)
            scenario["pipeline"]["workers"] = workers
            path = write_scenario(work, f"a-{name}-w{workers}", scenario)
            runs, bares, ratios = [], [], []
            for round_index in range(rounds):
                # alternated, ABBA: the machine's noise and its drift hit both alike
                if round_index % 2:
                    bares.append(bare_rate(path))
                summary = run_summary(path, work / "results")
                runs.append(value(summary, "samples_per_s"))
                if not round_index % 2:
                    bares.append(bare_rate(path))
                ratios.append(runs[-1] / bares[-1])
                print(
                    f"  {label}, {workers} worker(s), round {round_index + 1}: run "
                    f"{runs[-1]:7.1f} samples/s (busy {value(summary, 'busy_pct'):4.1f} %, "
                    f"data wait {value(summary, 'data_wait_pct'):4.1f} %)   pipeline alone "
                    f"{bares[-1]:7.1f} samples/s   ratio {ratios[-1]:.3f}   {load()}",
                    flush=True,
                )
            rows.append(
                {
                    "data": label,
                    "workers": workers,
                    "run": statistics.median(runs),
                    "bare": statistics.median(bares),
                    "ratio": statistics.median(ratios),
                    "best": max(runs) / max(bares),
                }
            )
    return rows


def print_not_the_bottleneck(rows: list[dict]) -> None:
    print(
        "\na. one emulated accelerator (0.1 ms steps, warm page cache) vs the pipeline alone, "
        "median of rounds"
    )
    print(f"  {'data':28s} {'workers':>7s} {'run samples/s':>14s} {'alone samples/s':>16s} "
          f"{'ratio':>6s} {'best/best':>9s}")  # fmt: skip
    for row in rows:
        print(
            f"  {row['data']:28s} {row['workers']:7d} {row['run']:14.1f} {row['bare']:16.1f} "
            f"{row['ratio']:6.3f} {row['best']:9.3f}"
        )
    print(
        "  (ratio: median of the rounds' ratios, each round's two measurements back to back; "
        "best/best: the fastest run over the fastest pipeline alone, since the machine's noise "
        "only ever slows a measurement down)"
    )


# --- b. storage-bound: the pipeline's reads vs fio ----------------------------------------------


def npy_cache_scenario(data: Path, videos: int, frames: int) -> dict:
    return {
        "name": "bench-emulated-npy",
        "description": "An npy frame cache of 640x360 frames, larger than a run reads.",
        "dataset": {
            "kind": "video",
            "path": str(data / "npy-video"),
            "generate": {
                "videos": videos,
                "frames": frames,
                "width": 640,
                "height": 360,
                "gop": 60,
                "bitrate_kbps": 800,
            },
        },
        "pipeline": {
            "mode": "cached",
            "cache": {"path": str(data / "npy-cache"), "format": "npy"},
            "workers": 2,
            "batch_size": 8,
            "crop": 128,
            "page_cache": "cold",
        },
        "training": {"model": {"width": 16, "depth": 3}, "steps": 10},
    }


def training_files(scenario_file: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(frame, mask) of every frame a run can draw (the held-out tail of each video is never
    read in training), and every file of the cache (what a cold start evicts)."""
    from harness.data.cache import frame_path, mask_path, read_cache_manifest
    from harness.data.manifest import require_complete
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import build_source
    from harness.scenario import load_scenario

    scenario = load_scenario(scenario_file).scenario
    manifest = require_complete(Path(scenario.dataset.path))
    cache = read_cache_manifest(scenario)
    source = build_source(scenario, manifest, cache)
    root, fmt = Path(scenario.pipeline.cache.path), cache["format_name"]
    segment = int(cache["segment_frames"])
    pairs = []
    for video, info in zip(cache["videos"], source.files, strict=True):
        first, end = SamplePlan.train_range(info)
        pairs += [
            (
                frame_path(root, video["id"], index, segment, fmt),
                mask_path(root, video["id"], index, segment, fmt),
            )
            for index in range(first, end)
        ]
    return pairs, source.data_files()


def job_folders(root: Path, pairs: list[tuple[Path, Path]], jobs: int) -> list[Path]:
    """``jobs`` folders, each with hard links to its own random share of the training frames
    (``frames/``) and their masks (``masks/``): fio's jobs then read disjoint files, in the
    order of their folders' entries (hash order on ext4: no relation to the files' places)."""
    folders = [root / f"jobs{jobs}" / f"job{k}" for k in range(jobs)]
    stamp = root / f"jobs{jobs}" / "made-for"  # links to a rebuilt cache would be stale
    wanted = f"{len(pairs)} samples, first frame inode {pairs[0][0].stat().st_ino}\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return folders
    shutil.rmtree(root / f"jobs{jobs}", ignore_errors=True)
    shuffled = list(pairs)
    random.Random(0).shuffle(shuffled)
    for k, folder in enumerate(folders):
        (folder / "frames").mkdir(parents=True)
        (folder / "masks").mkdir()
        for frame, mask in shuffled[k::jobs]:
            name = f"{frame.parent.parent.name}-{frame.stem}"
            os.link(frame, folder / "frames" / f"{name}.npy")
            os.link(mask, folder / "masks" / f"{name}.mask.npy")
    stamp.write_text(wanted)
    return folders


def drop_page_cache(files: list[Path]) -> None:
    """Empty the page cache before fio: ``drop_caches`` as root (one call), else evict the files
    one by one as a cold run does (``posix_fadvise``; slower on tens of thousands of files)."""
    from harness import pagecache

    if os.geteuid() == 0:
        os.sync()
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            return
        except OSError:
            pass  # a container may refuse it
    pagecache.evict(files)


def fio(options: list[str], sections: list[list[str]], evict: list[Path]) -> tuple[float, float]:
    """Run one fio job file after evicting ``evict``; (MB/s over all jobs, CPU seconds fio
    used: its user + system time as the kernel counts it for child processes)."""
    drop_page_cache(evict)
    lines = ["[global]", *options, "group_reporting=1"]
    for index, section in enumerate(sections):
        lines += [f"[job{index}]", *section]
    with tempfile.TemporaryDirectory(prefix="bench-fio-") as folder:
        job, report = Path(folder) / "job.fio", Path(folder) / "report.json"
        job.write_text("\n".join(lines) + "\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            ["fio", "--output-format=json", f"--output={report}", str(job)],
            capture_output=True,
            text=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"fio failed:\n{done.stderr.strip()}\njob file:\n{job.read_text()}")
        text = report.read_text()  # fio may print notes ("opendir added N files") first
    read = json.loads(text[text.index("{") :])["jobs"][0]["read"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not read["io_bytes"]:
        sys.exit(f"fio read nothing (are the files smaller than its block?):\n{text[:2000]}")
    return read["io_bytes"] / (read["runtime"] / 1000) / 1e6, cpu


def fio_psync(
    folders: list[Path], frame_bytes: int, mask_bytes: int, evict: list[Path]
) -> dict[str, float]:
    """Buffered psync reads of whole files, one job per folder: frames, then masks; and the
    rate of one frame + one mask per sample at those rates."""
    common = ["ioengine=psync", "rw=read", "direct=0", "invalidate=1"]
    per_job = FIO_PSYNC_BYTES // len(folders)
    out = {}
    for kind, size in (("frames", frame_bytes), ("masks", mask_bytes)):
        share = per_job if kind == "frames" else per_job * mask_bytes // frame_bytes
        out[kind], out[f"{kind}_cpu_s"] = fio(
            [*common, f"bs={size}", f"io_size={share // size * size}"],
            [[f"opendir={folder / kind}"] for folder in folders],
            evict,
        )
        out[f"{kind}_bytes"] = share // size * size * len(folders)
    sample = frame_bytes + mask_bytes
    out["sample"] = sample / (frame_bytes / out["frames"] + mask_bytes / out["masks"])
    samples = out["frames_bytes"] / frame_bytes
    out["cpu_ms_per_sample"] = (out["frames_cpu_s"] + out["masks_cpu_s"]) / samples * 1e3
    return out


def fio_ceiling(section: list[str], evict: list[Path], block: str) -> float:
    """Direct, asynchronous reads at queue depth 32, one job."""
    rate, _ = fio(
        [
            "ioengine=libaio",
            "direct=1",
            "iodepth=32",
            "rw=read",
            f"bs={block}",
            f"io_size={FIO_CEILING_BYTES}",
        ],
        [section],
        evict,
    )
    return rate


def ceiling_file(data: Path) -> Path:
    """One large file beside the frame cache, for the 1 MiB ceiling (every cache file is smaller
    than 1 MiB, and fio reads nothing of a file smaller than its block)."""
    path = data / "fio-ceiling.bin"
    if not path.is_file() or path.stat().st_size != FIO_CEILING_BYTES:
        subprocess.run(
            ["fio", "--name=layout", f"--filename={path}", f"--size={FIO_CEILING_BYTES}",
             "--rw=write", "--bs=1M", "--end_fsync=1", "--output=/dev/null"],
            check=True,
        )  # fmt: skip
    return path


# (accelerators, workers per accelerator, read threads per worker)
CONFIGS = ((1, 2, 1), (1, 2, 4), (1, 4, 1), (1, 4, 4), (1, 8, 1), (2, 2, 4))


def bench_storage_bound(
    work: Path,
    data: Path,
    rounds: int,
    videos: int,
    frames: int,
    samples: int,
    configs: tuple[tuple[int, int, int], ...] | list[tuple[int, ...]],
) -> tuple[list[dict], dict]:
    base = npy_cache_scenario(data, videos, frames)
    prepare = write_scenario(work, "b-prepare", base)
    harness("datagen", str(prepare))
    harness("cache", str(prepare))
    pairs, every_file = training_files(prepare)
    frame_bytes, mask_bytes = pairs[0][0].stat().st_size, pairs[0][1].stat().st_size
    cache_bytes = sum(p.stat().st_size for p in every_file)
    print(
        f"  npy frame cache: {len(every_file) // 2} samples, {cache_bytes / 1e9:.2f} GB, "
        f"{len(pairs)} training samples of {frame_bytes} + {mask_bytes} B (frame + mask files)"
    )
    links = data / "fio-jobs"
    profile = write_profile(work, base, NEAR_ZERO_S)
    rows = []
    for accelerators, workers, threads in configs:
        jobs = accelerators * workers
        folders = job_folders(links, pairs, jobs)
        steps = samples // (accelerators * base["pipeline"]["batch_size"])
        scenario = emulated(base, profile, steps, accelerators=accelerators)
        scenario["pipeline"]["workers"] = workers
        scenario["pipeline"]["read_threads"] = threads
        path = write_scenario(work, f"b-a{accelerators}-w{workers}-t{threads}", scenario)
        measured: dict[str, list[float]] = {}
        for round_index in range(rounds):
            summary = run_summary(path, work / "results")
            reference = fio_psync(folders, frame_bytes, mask_bytes, every_file)
            # like for like: as many psync jobs as the run keeps reads in flight
            alike = (
                fio_psync(
                    job_folders(links, pairs, jobs * threads), frame_bytes, mask_bytes, every_file
                )
                if threads > 1
                else reference
            )
            speed = value(summary, "samples_per_s")
            cpu_ms = value(summary, "cpu_pct") / 100 / speed * 1e3
            found = {
                "read": value(summary, "read_MBps"),
                "requested": value(summary, "requested_MBps"),
                "samples_per_s": speed,
                "busy": value(summary, "busy_pct"),
                "cpu_pct": value(summary, "cpu_pct"),
                "cpu_ms": cpu_ms,
                "fio_frames": reference["frames"],
                "fio_masks": reference["masks"],
                "fio_sample": reference["sample"],
                "fio_cpu_ms": reference["cpu_ms_per_sample"],
                "fio_alike": alike["sample"],
            }
            found["ratio"] = found["read"] / found["fio_sample"]
            found["ratio_alike"] = found["read"] / found["fio_alike"]
            for key, number in found.items():
                measured.setdefault(key, []).append(number)
            print(
                f"  {accelerators} accelerator(s) x {workers} workers x {threads} read threads, "
                f"round {round_index + 1}: "
                f"run reads {found['read']:6.1f} MB/s (asked {found['requested']:6.1f}, "
                f"{speed:6.1f} samples/s, CPU {found['cpu_pct']:5.1f} % = {cpu_ms:.2f} "
                f"ms/sample)   fio psync frames {found['fio_frames']:6.1f} masks "
                f"{found['fio_masks']:6.1f} per sample {found['fio_sample']:6.1f} MB/s "
                f"({found['fio_cpu_ms']:.2f} ms CPU/sample)   ratio {found['ratio']:.2f}; "
                f"{jobs * threads} psync jobs {found['fio_alike']:6.1f} MB/s, ratio "
                f"{found['ratio_alike']:.2f}   "
                f"{load()}",
                flush=True,
            )
        row = {"accelerators": accelerators, "workers": workers, "threads": threads, "jobs": jobs}
        row |= {key: statistics.median(numbers) for key, numbers in measured.items()}
        if accelerators == 1 and threads == 1:  # once: where a worker's time goes, cold
            row["alone"] = bare_run(path)
        rows.append(row)
    frames_folder = job_folders(links, pairs, 1)[0] / "frames"
    big = ceiling_file(data)
    ceilings = {
        "128k over the frame files": statistics.median(
            fio_ceiling([f"opendir={frames_folder}"], every_file, "128k") for _ in range(rounds)
        ),
        "1M over one 2 GiB file on the same filesystem": statistics.median(
            fio_ceiling([f"filename={big}"], [big], "1M") for _ in range(rounds)
        ),
    }
    return rows, {
        "ceiling": ceilings,
        "frame_bytes": frame_bytes,
        "mask_bytes": mask_bytes,
        "cache_bytes": cache_bytes,
    }


def print_storage_bound(rows: list[dict], context: dict) -> None:
    print(
        "\nb. storage-bound: an emulated run's reads (0.1 ms steps, cold) vs fio psync over the "
        "same files, numjobs = ranks x workers (ratio) and ranks x workers x read threads "
        "(alike), median of rounds (MB/s = 10^6 B/s)"
    )
    print(
        f"  {'ranks':>5s} {'workers':>7s} {'threads':>7s} {'run read':>9s} {'run asked':>9s} "
        f"{'samples/s':>9s} {'CPU %':>6s} {'CPU ms/s':>8s} {'fio frames':>10s} "
        f"{'fio masks':>9s} {'fio/sample':>10s} {'fio CPU':>7s} {'ratio':>6s} "
        f"{'fio alike':>9s} {'alike':>6s}"
    )
    for row in rows:
        print(
            f"  {row['accelerators']:5d} {row['workers']:7d} {row['threads']:7d} "
            f"{row['read']:9.1f} {row['requested']:9.1f} {row['samples_per_s']:9.1f} "
            f"{row['cpu_pct']:6.1f} {row['cpu_ms']:8.2f} {row['fio_frames']:10.1f} "
            f"{row['fio_masks']:9.1f} {row['fio_sample']:10.1f} {row['fio_cpu_ms']:7.2f} "
            f"{row['ratio']:6.2f} {row['fio_alike']:9.1f} {row['ratio_alike']:6.2f}"
        )
    print(
        "\n  the pipeline alone (no training loop), cold, once per worker count: where a "
        "DataLoader worker's time goes, ms per sample (/proc/<pid>/schedstat)"
    )
    print(
        f"  {'workers':>7s} {'samples/s':>9s} {'on a CPU':>8s} {'waiting for a CPU':>17s} "
        f"{'I/O or idle':>11s}"
    )
    for row in rows:
        alone = row.get("alone")
        if alone and "worker_cpu_ms" in alone:
            print(
                f"  {row['workers']:7d} {alone['samples_per_s']:9.1f} "
                f"{alone['worker_cpu_ms']:8.2f} {alone['worker_runqueue_ms']:17.2f} "
                f"{alone['worker_other_ms']:11.2f}"
            )
    print()
    for what, rate in context["ceiling"].items():
        print(
            f"  device ceiling, fio --direct=1 --ioengine=libaio --iodepth=32 --bs={what}: "
            f"{rate:.1f} MB/s"
        )
    print(
        "  (CPU ms/s: CPU milliseconds per sample, the run's process tree or fio's; fio/sample: "
        "one frame at the frames' rate plus one mask at the masks' rate)"
    )


# --- main ---------------------------------------------------------------------------------------


# --- c. busy-% floors of a 20 ms accelerator ------------------------------------------------------

FLOOR_STEP_S = 0.020


def small_scenario(name: str, root: Path, dataset: dict, **pipeline: object) -> dict:
    """The tests' tiny scenarios (batch 4, crop 48, 2 workers, U-Net 8x2, 5 classes)."""
    return {
        "name": name,
        "dataset": {"path": str(root / name), **dataset},
        "pipeline": {"batch_size": 4, "crop": 48, "workers": 2, **pipeline},
        "training": {"model": {"width": 8, "depth": 2}},
    }


def busy_run(work: Path, name: str, scenario: dict, steps: int) -> float:
    """busy % of one emulated run of ``steps`` at a constant 20 ms step (data prepared first)."""
    profile = write_profile(work, scenario, FLOOR_STEP_S)
    path = write_scenario(work, f"c-{name}", emulated(scenario, profile, steps))
    harness("datagen", str(path))
    if scenario["pipeline"].get("mode") == "cached":
        harness("cache", str(path))
    return value(run_summary(path, work / "results"), "busy_pct")


def bench_busy_floors(work: Path, data: Path, rounds: int) -> list[tuple[str, float, float]]:
    collage = small_scenario(
        "c-collage",
        data,
        {"kind": "image_collage", "generate": {"images": 3, "width": 160, "height": 120,
                                                "classes": 5, "seed": 3, "workers": 1}},
        page_cache="warm",
    )  # fmt: skip
    video = {"kind": "video", "generate": {"videos": 2, "frames": 360, "width": 640,
                                           "height": 360, "fps": 25, "gop": 180, "crf": 20,
                                           "classes": 5, "seed": 7, "workers": 1}}  # fmt: skip
    cache = {"path": str(data / "c-frame-cache"), "format": "npy", "segment_frames": 8}
    busiest, decoded, cached = 0.0, [], []
    for round_index in range(rounds):
        busiest = max(busiest, busy_run(work, "collage", collage, 60))
        for mode, found in (("decoded", decoded), ("cached", cached)):
            caching = {"cache": cache} if mode == "cached" else {}
            scenario = small_scenario("c-video", data, video, mode=mode, **caching)
            found.append(busy_run(work, mode, scenario, 30))
        print(
            f"  round {round_index + 1}: collage busy {busiest:5.1f} % (best so far), decoded "
            f"video {decoded[-1]:5.1f} %, frame cache {cached[-1]:5.1f} %   {load()}",
            flush=True,
        )
    return [
        ("busy %, 20 ms steps, collage in the page cache (best)", busiest, 95.0),
        ("idle %, 20 ms steps, long-GOP video decoded", 100 - statistics.median(decoded), 40.0),
        (
            "busy points, frame cache over decoded video",
            statistics.median(cached) - statistics.median(decoded),
            30.0,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "bench-emulated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", default="abc", help="which checks: any of a, b, c (default abc)")
    parser.add_argument("--videos", type=int, default=6, help="videos of the npy frame cache")
    parser.add_argument("--frames", type=int, default=2400, help="frames per video (b)")
    parser.add_argument(
        "--samples", type=int, default=2400, help="samples one run of b reads, over all ranks"
    )
    parser.add_argument(
        "--configs",
        help="b: which accelerators x workers x read threads, e.g. 1x2x1,1x2x4 (default: all of "
        + ",".join("x".join(map(str, config)) for config in CONFIGS)
        + ")",
    )
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--bare", help=argparse.SUPPRESS)  # internal: one pipeline-alone run
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(bare_pipeline(args.bare)))
        return 0
    if "b" in args.parts and shutil.which("fio") is None:
        sys.exit("error: fio is needed for this benchmark (apt-get install fio)")
    data = args.dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    targets = []
    with tempfile.TemporaryDirectory(prefix="bench-emulated-", dir=data) as folder:
        work = Path(folder)
        if "a" in args.parts:
            print("a. the harness is not the bottleneck (warm page cache, 0.1 ms steps)")
            rows = bench_not_the_bottleneck(work, data / "quick", args.rounds)
            print_not_the_bottleneck(rows)
            targets += [
                (f"run / pipeline alone, {r['data']}, {r['workers']} w", r["ratio"], 0.90)
                for r in rows
            ]
        if "b" in args.parts:
            print("\nb. storage-bound (cold page cache, 0.1 ms steps)")
            configs = (
                [tuple(int(n) for n in c.split("x")) for c in args.configs.split(",")]
                if args.configs
                else CONFIGS
            )
            rows, context = bench_storage_bound(
                work, data, args.rounds, args.videos, args.frames, args.samples, configs
            )
            print_storage_bound(rows, context)
            targets += [
                (
                    f"run reads / fio psync, {r['accelerators']} x {r['workers']} workers x "
                    f"{r['threads']} read threads",
                    r["ratio"],
                    0.90,
                )
                for r in rows
            ]
        if "c" in args.parts:
            print("\nc. busy-% floors of a 20 ms accelerator")
            targets += bench_busy_floors(work, data, args.rounds)
    print("\ntargets (median of rounds)")
    missed = 0
    for name, number, target in targets:
        ok = number >= target
        missed += not ok
        print(f"  {name:58s} {number:6.3f}  >= {target:<5g} {'ok' if ok else 'MISSED'}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
