"""Soak: memory of a long run, flat in run length (measurements streamed to disk as they go).

    python benchmarks/bench_soak.py [--minutes N] [--dir DIR] [--step-ms MS] [--strict]

One emulated run of ``--minutes`` (default 10) of the quick cached scenario
(scenarios/quick/video_cached.yaml, its page cache warm) at 4 emulated accelerators with a short
constant step (``--step-ms``, default 20 ms, written as a profile for the scenario's CPU
settings: batch 8, crop 128, U-Net w16/d3). Prints the memory of the run at each minute: the
RSS of its process tree (the harness, its ranks and their DataLoader workers, MB = 10^6 B) and
its files in shared memory (/dev/shm/harness-*: the page ledger, the fetch logs; a tmpfs is
memory, yet no process's RSS), the growth of their sum in MB per hour after warm-up (the
least-squares slope of a sample every 5 s, the first minute left out, or the first fifth of a
shorter run), the run folder's size per hour, and samples/s. ``--strict`` exits 1 when the
growth exceeds 1 % of the memory per hour (issue 30's target).
Data is generated under ``--dir`` on first use and kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_emulated import emulated, harness, write_profile  # noqa: E402

ACCELERATORS = 4
SAMPLE_EVERY_S = 5.0
TARGET_PCT_PER_HOUR = 1.0


RSS_FIELDS = ("RssAnon", "RssFile", "RssShmem")  # VmRSS is their sum
Tree = dict[int, tuple[str, dict[str, int]]]  # pid -> (name, bytes of each RSS field)


def tree_memory(root: int) -> Tree:
    """``root`` and every descendant: pid -> (name, bytes of each of ``RSS_FIELDS``)."""
    found: Tree = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # exited meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        sizes = {key: int(fields.get(key, "0 kB").split()[0]) * 1024 for key in RSS_FIELDS}
        found[pid] = (fields.get("Name", "?").strip(), sizes)
    return found


def by_process(
    first: dict[int, tuple[str, dict[str, int]]], last: dict[int, tuple[str, dict[str, int]]]
) -> None:
    """Each process alive at both moments: its growth in each RSS field (MB)."""
    print(f"  by process, after warm-up to the end (MB): {'pid':>8} {'name':<16}", *RSS_FIELDS)
    for pid in sorted(set(first) & set(last)):
        name, before = first[pid]
        after = last[pid][1]
        growth = "  ".join(f"{(after[k] - before[k]) / 1e6:+7.2f}" for k in RSS_FIELDS)
        print(f"  {'':41} {pid:>8} {name:<16} {growth}")


def shared_memory_bytes() -> int:
    """Bytes the harness's files in /dev/shm hold (allocated, not their apparent size: a fetch
    log's read records are punched out)."""
    total = 0
    for path in Path("/dev/shm").glob("harness-*"):
        try:
            total += path.stat().st_blocks * 512
        except OSError:
            continue  # removed meanwhile
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def growth_per_hour(times_s: np.ndarray, rss: np.ndarray, warmup_s: float) -> float | None:
    """Least-squares slope of RSS after warm-up, in bytes per hour."""
    keep = times_s >= warmup_s
    if keep.sum() < 3:
        return None
    slope = np.polyfit(times_s[keep], rss[keep], 1)[0]
    return float(slope * 3600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "bench-soak")
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument(
        "--by-process", action="store_true", help="each process's growth in RSS fields at the end"
    )
    args = parser.parse_args()
    if not args.minutes > 0:
        parser.error("--minutes must be positive")
    work = args.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((REPO / "scenarios" / "quick" / "video_cached.yaml").read_text())
    base["dataset"]["path"] = str(work / "videos")
    base["pipeline"]["cache"]["path"] = str(work / "frame-cache")
    base["pipeline"]["page_cache"] = "warm"
    profile = write_profile(work, base, args.step_ms / 1e3)
    scenario = emulated(base, profile, 1, accelerators=ACCELERATORS)
    scenario["training"].update(steps=None, duration_s=args.minutes * 60)
    scenario["name"] = "soak"
    path = work / "soak.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    harness("datagen", str(path))
    harness("cache", str(path))

    results = Path(tempfile.mkdtemp(prefix="soak-", dir=work))
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--results", str(results), "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    times, rss, shm = [], [], []
    first_tree: Tree | None = None  # after warm-up
    last_tree: Tree = {}
    next_minute = 60.0
    print(
        f"soak: {args.minutes:g} min, {ACCELERATORS} emulated accelerators, "
        f"{args.step_ms:g} ms a step (medians of each minute, MB)"
    )
    print(f"  {'minute':>6} {'RSS':>8} {'/dev/shm':>9} {'sum':>8}")
    while process.poll() is None:
        now = time.monotonic() - started
        times.append(now)
        tree = tree_memory(process.pid)
        rss.append(sum(sum(sizes.values()) for _, sizes in tree.values()))
        if now >= 60.0 and first_tree is None:
            first_tree = tree
        if tree and now <= args.minutes * 60:  # not the tree as it exits
            last_tree = tree
        shm.append(shared_memory_bytes())
        if now >= next_minute:
            # the median of the minute's samples: the tree's RSS jumps as workers come and go
            recent = [i for i, t in enumerate(times) if t >= next_minute - 60.0]
            r, m = np.median([rss[i] for i in recent]), np.median([shm[i] for i in recent])
            print(
                f"  {next_minute / 60:6.0f} {r / 1e6:8.1f} {m / 1e6:9.1f} {(r + m) / 1e6:8.1f}",
                flush=True,
            )
            next_minute += 60.0
        time.sleep(SAMPLE_EVERY_S)
    _, err = process.communicate()
    elapsed_h = (time.monotonic() - started) / 3600
    if process.returncode != 0:
        sys.exit(f"the soak run failed ({process.returncode}): {err.strip()[-2000:]}")
    (folder,) = list(results.iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    t, r = np.array(times), np.array(rss, dtype=np.float64) + np.array(shm, dtype=np.float64)
    raw = work / f"soak-rss-{time.strftime('%Y%m%dT%H%M%S')}.csv"  # every sample, for a plot
    np.savetxt(
        raw,
        np.column_stack([t, rss, shm]),
        delimiter=",",
        header="t_s,rss_bytes,shm_bytes",
        fmt="%.3f",
    )
    warmup_s = min(60.0, 0.2 * t[-1]) if len(t) else 0.0
    # only while the run ran: its last samples catch the tree as it exits
    running = t <= args.minutes * 60
    growth = growth_per_hour(t[running], r[running], warmup_s)
    growth_rss = growth_per_hour(t[running], np.array(rss, dtype=np.float64)[running], warmup_s)
    size = folder_bytes(folder)
    samples_per_s = (summary["metrics"].get("samples_per_s") or {}).get("value")
    print(f"  samples/s: {samples_per_s}")
    if growth is None:
        print("  memory growth: too few samples after warm-up (run longer)")
    else:
        mean = float(r[running & (t >= warmup_s)].mean())
        print(
            f"  memory growth after warm-up: {growth / 1e6:+.1f} MB/h "
            f"({100 * growth / mean:+.2f} % of {mean / 1e6:.0f} MB per hour; "
            f"RSS alone {(growth_rss or 0) / 1e6:+.1f} MB/h)"
        )
    print(f"  run folder: {size / 1e6:.1f} MB, {size / 1e6 / elapsed_h:.1f} MB per hour of run")
    if args.by_process and first_tree is not None:
        by_process(first_tree, last_tree)
    for leftover in results.rglob("*"):
        if leftover.is_file():
            leftover.unlink()
    for leftover in sorted(results.rglob("*"), reverse=True):
        leftover.rmdir()
    results.rmdir()
    if args.strict and growth is not None and 100 * growth / float(r.mean()) > TARGET_PCT_PER_HOUR:
        print(f"MISSED: memory growth above {TARGET_PCT_PER_HOUR} % per hour")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
