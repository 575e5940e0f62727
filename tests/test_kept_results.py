"""What a run keeps when the end goes wrong: a full disk while its files are written, a held-out
evaluation that fails or is interrupted, a standard output closed by its reader.

Each is a real short run through the CLI: a real tmpfs that fills up, a dataset renamed away
between training and evaluation (the only hook: the evaluation is wrapped to do that first), a
real SIGTERM, a real pipe whose reader has gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_collage_scenario

import harness.run.single
from harness.errors import ExitCode

pytestmark = pytest.mark.slow  # each test trains a tiny model


def _scenario(tmp_path: Path, **changes: Any) -> Path:
    settings: dict[str, Any] = {
        "dataset__generate__width": 192,
        "dataset__generate__height": 128,
        "pipeline__crop": 48,
        "pipeline__workers": 1,
        "training__steps": 6,
        "training__warmup_steps": 1,
        "training__model": {"width": 8, "depth": 2},
        "training__eval_samples": 8,
    }
    document = tiny_collage_scenario(tmp_path, **{**settings, **changes})
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _measured_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


def _fill(disk: Path, leave_kib: int) -> None:
    """Fill the tmpfs ``disk`` so that about ``leave_kib`` KiB stay free."""
    stats = os.statvfs(disk)
    free_kib = stats.f_bavail * stats.f_frsize // 1024
    (disk / "filler").write_bytes(b"\0" * ((free_kib - leave_kib) * 1024))


@pytest.mark.parametrize("leave_kib", [4, 16, 40, 80])
def test_a_full_disk_is_one_line_exit_1_and_no_partial_file(
    tmp_path: Path, cli, small_disk: Path, leave_kib: int
) -> None:
    """A real tmpfs (1 MiB) filled to leave a few KiB: whichever file the disk fills on (a
    table, the summary, a thumbnail: from 4 KiB to 80 KiB free, each in turn), the run fails
    in one line naming that file, exit 1, and every file left under its final name is
    complete."""
    path = _scenario(tmp_path)
    assert cli("datagen", path).returncode == 0
    _fill(small_disk, leave_kib)
    done = cli("run", path, "--results", small_disk / "results", "--quiet")
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and "disk full while writing " + str(small_disk) in lines[0], lines
    # measured but not saved: a failed run (1); at 4 KiB free the manifest, written before the
    # first step, may already not fit (tmpfs counts whole pages): nothing measured, bad input (2)
    written_last = lines[0].split("disk full while writing ", 1)[1].split(": ")[0]
    before_any_step = written_last.endswith("/manifest.json")
    expected = ExitCode.BAD_INPUT if before_any_step else ExitCode.FAILED
    assert done.returncode == expected, done.stderr
    (folder,) = (small_disk / "results").iterdir()
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in written if ".tmp" in p.name], written
    assert not [p for p in written if p.stat().st_size == 0], written
    for table in folder.glob("*.parquet"):
        pd.read_parquet(table)  # complete: readable
    for document in folder.glob("*.json"):
        json.loads(document.read_text())


def test_a_failed_held_out_evaluation_keeps_what_training_measured(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataset is moved away once training has ended: the evaluation cannot open a file.
    The run's steps, samples and series are kept, with a summary marked incomplete."""
    path = _scenario(tmp_path, pipeline__page_cache="cold")
    assert cli("datagen", path).returncode == 0
    real = harness.run.single.evaluate_model

    def dataset_gone_then_evaluate(*args: Any, **kwargs: Any) -> Any:
        dataset = tmp_path / "collage"
        for data in dataset.rglob("*.npy"):  # the pixels, not the dataset's manifest
            data.rename(data.with_suffix(".moved"))
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.run.single, "evaluate_model", dataset_gone_then_evaluate)
    done = cli("run", path, "--results", tmp_path / "results", "--quiet")
    assert done.returncode == 2, done.stderr  # a dataset file gone, as in the training loop
    (folder,) = (tmp_path / "results").iterdir()
    assert {"steps.parquet", "samples.parquet", "summary.json"} <= _measured_files(folder)
    assert list(folder.glob("series_*.parquet"))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["reason"].startswith("held-out evaluation failed: "), summary["reason"]
    assert len(pd.read_parquet(folder / "steps.parquet")) == 6
    assert summary["reason"] in done.stderr and "Traceback" not in done.stderr
    assert not (folder / "thumbnails").exists()  # kept for a complete run only


def test_sigterm_during_the_held_out_evaluation_keeps_what_training_measured(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _scenario(tmp_path)
    assert cli("datagen", path).returncode == 0
    real = harness.run.single.evaluate_model
    default = signal.getsignal(signal.SIGTERM)

    def terminated_then_evaluate(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # as a CI timeout would, while it evaluates
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.run.single, "evaluate_model", terminated_then_evaluate)
    done = cli("run", path, "--results", tmp_path / "results", "--quiet")
    assert done.returncode == 143, done.stderr
    (folder,) = (tmp_path / "results").iterdir()
    assert {"steps.parquet", "samples.parquet", "summary.json"} <= _measured_files(folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["reason"] == "interrupted by SIGTERM during the held-out evaluation"
    assert summary["metrics"]["steps"]["value"] == len(pd.read_parquet(folder / "steps.parquet"))
    assert len(pd.read_parquet(folder / "steps.parquet")) == 6
    assert signal.getsignal(signal.SIGTERM) is default  # the run gave SIGTERM back


def test_a_complete_run_rewrites_its_summary_with_the_evaluation(tmp_path: Path, cli) -> None:
    path = _scenario(tmp_path)
    assert cli("datagen", path).returncode == 0
    done = cli("run", path, "--results", tmp_path / "results", "--quiet")
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "results").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is True and summary.get("reason") is None
    assert "miou" in json.dumps(summary).lower()
    assert (folder / "thumbnails").is_dir()


def test_a_closed_stdout_is_a_quiet_exit_141_with_the_results_kept(tmp_path: Path) -> None:
    """``harness run X | head -1``: the reader is gone before the run prints its summary. The
    run's files are written; no traceback; 141 as a process killed by SIGPIPE would end."""
    path = _scenario(tmp_path, training__eval_samples=0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    harness_cli = [sys.executable, "-m", "harness"]
    subprocess.run([*harness_cli, "datagen", str(path)], cwd=REPO, env=env, check=True,
                   capture_output=True)  # fmt: skip
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line
    with open(write, "wb") as stdout:
        done = subprocess.run(
            [*harness_cli, "run", str(path), "--results", str(tmp_path / "results")],
            cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    (folder,) = (tmp_path / "results").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is True
