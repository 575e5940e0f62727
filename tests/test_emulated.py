"""Emulated accelerators through the real CLI: profiles, the loop, N ranks, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    REPO,
    flat_profile,
    free_port,
    run_harness,
    tiny_collage_scenario,
    tiny_video_scenario,
)

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess

FLAT_MS = 20.0


def emulated(scenario: dict, profile: Path | str, **training: object) -> dict:
    scenario["pipeline"].update({"batch_size": 4, "crop": 48, "workers": 2})
    scenario["training"] = {
        "steps": 60,
        "warmup_steps": 5,
        "model": {"width": 8, "depth": 2},
        "compute": "emulated",
        "profile": str(profile),
        **training,
    }
    return scenario


def run(tmp_path: Path, write_scenario, scenario: dict, *extra: str):
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    if scenario["pipeline"].get("mode") == "cached":
        assert run_harness("cache", str(file)).returncode == 0
    return run_harness("run", str(file), "--results", str(tmp_path / "results"), *extra)


def only_run(tmp_path: Path) -> tuple[Path, dict, dict]:
    (folder,) = sorted((tmp_path / "results").iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder, summary, manifest


def value(summary: dict, name: str) -> float:
    return summary["metrics"][name]["value"]


def assert_time_is_accounted(steps: pd.DataFrame, summary: dict) -> pd.DataFrame:
    """Every step's wall time is its wait, compute and barrier; the summary's busy, data-wait and
    barrier shares plus the loop's own time are 100 % of the measured wall. Holds on a machine
    however busy; fails when the code drops or double-counts time. Returns the measured steps."""
    parts = steps["wait_s"] + steps["compute_s"] + steps["barrier_s"]
    assert (steps["t_end"] - steps["t_start"]).to_numpy() == pytest.approx(
        parts.to_numpy(), abs=1e-6
    )
    measured = steps[~steps["warmup"]]
    wall = measured["t_end"].max() - measured["t_start"].min()
    loop_pct = wall - (measured["wait_s"] + measured["compute_s"] + measured["barrier_s"]).sum()
    loop_pct = loop_pct / wall * 100
    assert loop_pct >= -1e-6  # the loop's own time between steps: never negative
    shares = [value(summary, name) for name in ("busy_pct", "data_wait_pct", "barrier_pct")]
    assert sum(shares) + loop_pct == pytest.approx(100.0, abs=1e-3)  # the summary rounds to 1e-6
    assert value(summary, "busy_pct") == pytest.approx(
        measured["compute_s"].sum() / wall * 100, rel=0.005
    )
    return measured


def test_a_20ms_profile_on_data_in_the_page_cache_spends_every_drawn_step(tmp_path, write_scenario):
    """The busy-% floor (>= 95 %) is benchmarks/bench_emulated.py's part c; here, accounting."""
    profile = flat_profile(tmp_path / "flat-20ms.json")
    scenario = emulated(tiny_collage_scenario(tmp_path), profile)
    scenario["pipeline"]["page_cache"] = "warm"
    done = run(tmp_path, write_scenario, scenario, "--quiet")
    assert done.returncode == 0, done.stderr
    folder, summary, manifest = only_run(tmp_path)
    steps = pd.read_parquet(folder / "steps.parquet")
    assert len(steps) == 60 and steps["warmup"].sum() == 5 and (steps["samples"] == 4).all()
    assert value(summary, "measured_steps") == 55
    measured = assert_time_is_accounted(steps, summary)
    # every emulated step waited out the profile's whole drawn time (a flat 20 ms, scale 1), as
    # measured (a loaded machine makes it longer, never shorter), and trained no model
    assert (measured["compute_s"] >= FLAT_MS / 1000).all(), measured["compute_s"].min()
    assert (steps["compute_nominal_s"] == FLAT_MS / 1000).all()  # the drawn time, recorded
    assert steps["loss"].isna().all() and value(summary, "loss_first") is None
    assert summary["emulation"]["profile"] == "flat-20ms"
    assert manifest["emulation"]["scale"] == 1.0
    # the held-out samples are kept as pictures: input and truth, no prediction, said why
    thumbnails = manifest["thumbnails"]
    assert thumbnails["no_prediction"].startswith("emulated run: no model")
    for sample in thumbnails["samples"]:
        assert sample["prediction"] is None and (folder / sample["input"]).is_file()
        assert (folder / sample["truth"]).is_file()
    assert not list(folder.glob("thumbnails/*prediction*"))


def test_emulated_decoded_video_and_its_frame_cache_account_for_their_time(
    tmp_path, write_scenario
):
    """Random frames of long-GOP video, decoded on the fly and from the frame cache, at the
    same profile: both runs account for every step. The gap between them (the decoded pipeline
    starves the emulated accelerator, the frame cache does not) is a performance floor:
    benchmarks/bench_emulated.py's part c."""
    profile = flat_profile(tmp_path / "flat-20ms.json")
    for mode in ("decoded", "cached"):
        scenario = emulated(
            tiny_video_scenario(
                tmp_path,
                dataset__generate__frames=360,
                dataset__generate__width=640,
                dataset__generate__height=360,
                dataset__generate__gop=180,
                pipeline__mode=mode,
            ),
            profile,
            steps=30,
        )
        done = run(tmp_path, write_scenario, scenario, "--quiet")
        assert done.returncode == 0, done.stderr
        folder, summary, manifest = only_run(tmp_path)
        assert summary["complete"] and manifest["scenario"]["pipeline"]["mode"] == mode
        steps = pd.read_parquet(folder / "steps.parquet")
        assert len(steps) == 30 and (steps["samples"] == 4).all()
        measured = assert_time_is_accounted(steps, summary)
        assert (measured["compute_s"] >= FLAT_MS / 1000).all(), (mode, measured["compute_s"].min())
        subprocess.run(["rm", "-rf", str(folder)], check=True)


def test_two_accelerators_through_the_launcher_make_one_result(tmp_path, write_scenario):
    profile = flat_profile(tmp_path / "flat-20ms.json")
    scenario = emulated(tiny_collage_scenario(tmp_path), profile, steps=30, accelerators=2)
    done = run(tmp_path, write_scenario, scenario)
    assert done.returncode == 0, done.stderr
    assert "accelerators" in done.stdout and "barrier_pct" in done.stdout
    folder, summary, manifest = only_run(tmp_path)
    assert summary["complete"] and summary["ranks"] == 2 and manifest["ranks"] == 2
    assert value(summary, "accelerators") == 2
    # one set of held-out pictures for the run, written by the host (no rank writes its own)
    assert len(manifest["thumbnails"]["samples"]) == 4
    assert len(list(folder.glob("thumbnails/*-input.png"))) == 4
    steps = pd.read_parquet(folder / "steps.parquet")
    assert steps.groupby("rank").size().to_dict() == {0: 30, 1: 30}  # the same steps each
    samples = pd.read_parquet(folder / "samples.parquet")
    assert samples.groupby("rank").size().to_dict() == {0: 120, 1: 120}
    for name in ("busy_pct[rank0]", "busy_pct[rank1]", "busy_pct_min", "barrier_pct"):
        assert value(summary, name) is not None, name
    assert value(summary, "busy_pct_min") <= value(summary, "busy_pct")
    assert (steps["barrier_s"] > 0).any()  # the vote after each step is timed on its own
    # the host's collectors saw both ranks and their workers: one series, one process tree
    cpu = pd.read_parquet(folder / "series_cpu.parquet")
    assert set(cpu["rank"]) == {0}
    assert not (folder / "ranks").exists()  # the ranks' files were merged, then removed


def test_calibrate_writes_a_profile_that_a_run_then_uses(tmp_path, write_scenario):
    scenario = tiny_collage_scenario(tmp_path)
    scenario["pipeline"].update({"batch_size": 4, "crop": 48})
    scenario["training"] = {"steps": 10, "warmup_steps": 2, "model": {"width": 8, "depth": 2}}
    file = write_scenario(scenario, "real.yaml")
    out = tmp_path / "cpu.json"
    done = run_harness("calibrate", str(file), "--out", str(out), "--steps", "4", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    profile = json.loads(out.read_text())
    assert profile["format"] == "harness-profile" and profile["format_version"] == 1
    assert len(profile["step_s"]) == 4 and profile["mean_step_s"] > 0
    assert profile["flops_per_batch"] > 0 and profile["settings"]["crop"] == 48
    done = run(tmp_path, write_scenario, emulated(scenario, out, steps=8, warmup_steps=2))
    assert done.returncode == 0, done.stderr
    _, summary, _ = only_run(tmp_path)
    assert summary["emulation"]["profile"] == "cpu" and summary["complete"]


def test_a_mismatched_profile_is_refused_unless_scaled_by_flops(tmp_path, write_scenario):
    scenario = emulated(
        tiny_collage_scenario(tmp_path), "h200-unet-w64-512-bf16-b16", steps=8, warmup_steps=2
    )
    refused = run(tmp_path, write_scenario, scenario)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "batch 16 in the profile, 4 here" in refused.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    file = tmp_path / "scenario.yaml"
    assert run_harness("validate", str(file)).returncode == 2  # validate catches it too
    done = run_harness(
        "run", str(file), "--results", str(tmp_path / "results"), "-o",
        "training.profile_scaling=flops",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, summary, manifest = only_run(tmp_path)
    emulation = manifest["emulation"]
    assert emulation["scaling"] == "flops" and 0 < emulation["scale"] < 0.01
    assert emulation["scale"] == pytest.approx(
        emulation["scenario_flops_per_batch"] / emulation["profile_flops_per_batch"]
    )
    assert summary["emulation"] == emulation


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_killed_or_stopped_rank_ends_the_run_with_one_line(tmp_path, write_scenario, how):
    profile = flat_profile(tmp_path / "flat-20ms.json")
    scenario = emulated(
        tiny_collage_scenario(tmp_path),
        profile,
        steps=None,
        duration_s=300,
        accelerators=2,
        collective_timeout_s=5,
    )
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    results = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(file), "--results", str(results), "--quiet"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        pid_file = _wait_for(lambda: next(results.glob("*/ranks/rank1.pid"), None), 60)
        time.sleep(3)  # some steps first
        target = int(pid_file.read_text())
        os.kill(target, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        started = time.monotonic()
        _out, err = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode not in (0, None)
    # ended by the collective timeout and the launcher (communicate's 60 s is the hang guard)
    print(f"the run ended {took:.1f} s after rank 1 was {how}")
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 1" in errors[0], err
    assert ("died" if how == "killed" else "stopped") in errors[0]
    folder = next(results.iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is False and "rank 1" in summary["reason"]
    steps = pd.read_parquet(folder / "steps.parquet")
    assert (steps["rank"] == 0).sum() > 0  # the surviving rank's steps are kept


def _wait_for(find, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def _torchrun(file: Path, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", str(free_port()),
            "-m", "harness", "run", str(file), "--results", str(results), "--quiet",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_under_torchrun_each_process_is_one_accelerator(tmp_path, write_scenario):
    profile = flat_profile(tmp_path / "flat-20ms.json")
    scenario = emulated(tiny_collage_scenario(tmp_path), profile, steps=20)
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    done = _torchrun(file, tmp_path / "results")
    assert done.returncode == 0, done.stderr
    folder, summary, _ = only_run(tmp_path)
    assert summary["complete"] and summary["ranks"] == 2 and value(summary, "accelerators") == 2
    steps = pd.read_parquet(folder / "steps.parquet")
    assert steps.groupby("rank").size().to_dict() == {0: 20, 1: 20}
    assert (steps["barrier_s"] > 0).all() and not (folder / "ranks").exists()
    scenario["training"]["accelerators"] = 3  # not what torchrun was told
    refused = _torchrun(write_scenario(scenario), tmp_path / "refused")
    assert refused.returncode != 0
    assert "training.accelerators 3: under torchrun" in refused.stderr
