"""Regenerate the golden run folders under tests/data/golden/ with the real CLI (`make golden`).

Each folder is what `harness run` wrote for a tiny generated scenario, some 35 kB:

- ``collage``: a complete run of a tiny image collage scenario;
- ``video-cached``: a complete run of a tiny video scenario read from its frame cache;
- ``interrupted``: a tiny decoded-video run stopped with SIGTERM after a few steps
  (``"complete": false``), as Ctrl-C in a terminal or a CI timeout leaves it.

The fast tests (tests/test_golden*.py, tests/test_compare.py) copy these folders and read them
through ``harness.cli.main``; they never depend on the numbers themselves, only on what
summary.json says, so regenerating on another machine keeps them passing. Regenerate after a
change of the run folder format (harness/results.py) and commit the new folders with it.

    python tests/data/make_golden.py [--out DIR] [--keep-work]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from conftest import tiny_collage_scenario, tiny_video_scenario  # noqa: E402

GOLDEN = TESTS / "data" / "golden"
# Enough measured steps (a second or two) for the collectors' rates to be measured too.
TRAINING = {"steps": 40, "warmup_steps": 4, "model": {"width": 8, "depth": 2}, "eval_samples": 8}
PIPELINE = {"batch_size": 4, "workers": 1, "crop": 64}
COLLECTORS = {"rate_hz": 5.0}  # a few dozen samples per series: tables stay kilobytes
THRESHOLDS = {"min_busy_pct": 1.0, "max_data_wait_pct": 99.0, "min_gpu_util_pct": 50.0}


def _small(scenario: dict[str, Any], name: str) -> dict[str, Any]:
    scenario["name"] = name
    scenario["description"] = "golden run for the fast tests (tests/data/make_golden.py)"
    scenario["pipeline"].update(PIPELINE)
    scenario["training"] = dict(TRAINING)
    scenario["collectors"] = dict(COLLECTORS)
    scenario["thresholds"] = dict(THRESHOLDS)
    return scenario


def _harness(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")


def _write(work: Path, name: str, scenario: dict[str, Any]) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def _only_run(results: Path) -> Path:
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    return run


def _complete_run(work: Path, name: str, scenario: dict[str, Any]) -> Path:
    path = _write(work, name, scenario)
    _harness("datagen", str(path))
    _harness("cache", str(path))
    results = work / f"results-{name}"
    _harness("run", str(path), "--results", str(results), "--quiet")
    return _only_run(results)


def _interrupted_run(work: Path, scenario: dict[str, Any], settle_s: float) -> Path:
    """A run of unbounded length, stopped by SIGTERM once its workers have delivered a few
    measured steps."""
    scenario["training"].update(steps=None, duration_s=300)
    path = _write(work, "interrupted", scenario)
    _harness("datagen", str(path))
    results = work / "results-interrupted"
    shutil.rmtree(results, ignore_errors=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--results", str(results)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (results.exists() and any(results.iterdir()) and _has_children(process.pid)):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise SystemExit(f"the run to interrupt did not start:\n{process.communicate()[1]}")
        time.sleep(0.1)
    time.sleep(settle_s)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    if process.returncode != 143 or "interrupted by SIGTERM" not in err:
        raise SystemExit(f"the interrupted run ended with {process.returncode}:\n{err}")
    return _only_run(results)


def _has_children(pid: int) -> bool:
    tasks = Path(f"/proc/{pid}/task")
    return tasks.exists() and any((t / "children").read_text().split() for t in tasks.iterdir())


def _measured_steps(run: Path) -> int:
    summary = json.loads((run / "summary.json").read_text())
    return int(summary["metrics"].get("measured_steps", {}).get("value") or 0)


def _install(run: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run, target)
    size = sum(f.stat().st_size for f in target.iterdir())
    print(f"{target}: {size / 1024:.0f} kB, from run {run.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN, help="default: tests/data/golden")
    parser.add_argument("--keep-work", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="harness-golden-"))
    try:
        collage = _complete_run(
            work,
            "collage",
            _small(
                tiny_collage_scenario(
                    work, dataset__generate__width=256, dataset__generate__height=160
                ),
                "golden-collage",
            ),
        )
        cached = _complete_run(
            work,
            "video-cached",
            _small(tiny_video_scenario(work, pipeline__mode="cached"), "golden-video-cached"),
        )
        for settle_s in (2.0, 5.0, 10.0):  # on a busy machine the first steps come later
            scenario = _small(
                tiny_video_scenario(work, pipeline__mode="decoded"), "golden-interrupted"
            )
            interrupted = _interrupted_run(work, scenario, settle_s)
            if _measured_steps(interrupted) > 0:
                break
        else:
            raise SystemExit("the interrupted run never got past its warm-up steps")
        args.out.mkdir(parents=True, exist_ok=True)
        for name, run in (
            ("collage", collage),
            ("video-cached", cached),
            ("interrupted", interrupted),
        ):
            _install(run, args.out / name)
    finally:
        if args.keep_work:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
