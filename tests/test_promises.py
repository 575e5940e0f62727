"""README promises that had no test: each checked here cheaply, in process, through the CLI.

- ``harness compare`` exits 2 with one line for a summary it cannot read;
- the DALI backend, where DALI is not installed, is "not available" with the reason, and a run
  that asks for it stops before any work (exit 2);
- Ctrl-C (SIGINT) ends a run with exit 130 and keeps what it measured, marked incomplete;
- a suite or capacity search refuses a report folder it cannot write before any work;
- hostile strings in every environment field of a run (host name, CPU model, mount options,
  software versions, warnings; the description is not shown) reach the report as text, never
  as markup.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_golden, tiny_collage_scenario

EVIL = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;'


def test_compare_refuses_an_unreadable_summary(tmp_path: Path, cli) -> None:
    good = copy_golden("collage", tmp_path / "good")
    for name, text in (("truncated", '{"run_id": "x", "metr'), ("binary", "\x00\xff\x00")):
        bad = copy_golden("collage", tmp_path / name)
        (bad / "summary.json").write_text(text, errors="surrogateescape")
        done = cli("compare", good, bad)
        assert done.returncode == 2 and done.stdout == "", (name, done.stdout)
        (line,) = done.stderr.strip().splitlines()
        assert str(bad / "summary.json") in line, line


def test_dali_is_not_available_where_it_is_not_installed(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An import of nvidia.dali fails as on a machine without the package.
    for name in [m for m in sys.modules if m == "nvidia.dali" or m.startswith("nvidia.dali.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    from harness.pipeline import backend_unavailable

    reason = backend_unavailable("dali")
    assert reason is not None and reason.startswith("NVIDIA DALI is not installed")
    path = tmp_path / "dali.yaml"
    path.write_text(
        yaml.safe_dump(tiny_collage_scenario(tmp_path, pipeline__backend="dali"), sort_keys=False)
    )
    done = cli("run", path, "--results", tmp_path / "r")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: backend dali not available: NVIDIA DALI is not installed")
    assert not (tmp_path / "r").exists()  # refused before any work


def test_sigint_ends_a_run_with_130_and_keeps_its_results(tmp_path: Path, cli) -> None:
    from harness.cli import main

    document = tiny_collage_scenario(
        tmp_path,
        dataset__generate__width=320,
        dataset__generate__height=256,
        pipeline__workers=1,
        pipeline__page_cache="warm",
        training__steps=None,
        training__duration_s=120,
        training__warmup_steps=1,
        training__model={"width": 8, "depth": 2},
        training__eval_samples=0,
    )
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert main(["datagen", str(path)]) == 0
    default = signal.getsignal(signal.SIGINT)
    finished = threading.Event()  # the run ended: never press Ctrl-C after it

    def press_ctrl_c() -> None:
        """Once the run's loop has taken over Ctrl-C and its DataLoader worker is up, press
        it: a handshake on the run's own state, not a guess of how long it takes to start."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not finished.is_set():
            workers = [
                child
                for task in Path("/proc/self/task").iterdir()
                for child in (task / "children").read_text().split()
            ]
            if signal.getsignal(signal.SIGINT) is not default and workers:
                # a few steps, so that what is kept is more than nothing
                if not finished.wait(0.5):
                    os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    try:
        done = cli("run", path, "--results", tmp_path / "r", "--quiet")
    finally:
        finished.set()
        presser.join(timeout=5)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    (folder,) = (tmp_path / "r").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] is False and summary["reason"] == "interrupted by SIGINT"
    steps = pd.read_parquet(folder / "steps.parquet")
    assert len(steps) == summary["metrics"]["steps"]["value"]
    assert signal.getsignal(signal.SIGINT) is default  # the run gave Ctrl-C back


def test_hostile_environment_strings_reach_the_report_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's real template and tables, with the figures left out (they show numbers,
    not these strings, and take seconds to draw)."""
    from harness.report import document
    from harness.report.html import render_html
    from harness.report.runs import load_inputs
    from harness.report.sections_tables import (
        checks_section,
        environment_section,
        runs_section,
        summary_section,
    )

    run = copy_golden("collage", tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    hardware = manifest["hardware"]
    for field in ("hostname", "cpu_model", "storage_mount_options", "storage_fs_type"):
        hardware[field] = f"{field} {EVIL}"
    manifest["scenario"]["description"] = f"description {EVIL}"
    software = manifest["software"]
    for key in list(software)[:3]:
        software[key] = f"{key} {EVIL}"
    (run / "manifest.json").write_text(json.dumps(manifest))
    summary = json.loads((run / "summary.json").read_text())
    summary["warnings"] = [f"warning {EVIL}"]
    (run / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(
        document,
        "_run_sections",
        lambda runs: [
            runs_section(runs),
            summary_section(runs),
            checks_section(runs),
            environment_section(runs),
        ],
    )
    runs, capacity = load_inputs([run])
    text = render_html(document.build_document(runs, capacity), runs)
    assert "<script>alert" not in text and "<img src=x" not in text and 'onerror="' not in text
    escaped = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    fields = ["hostname", "cpu_model", "storage_mount_options", "warning", *list(software)[:3]]
    for field in fields:
        assert f"{field} {escaped}&amp;amp;" in text, field


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A real read-only file system (a tmpfs mounted ``ro``): root cannot write there either."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


PROFILE = "h200-unet-w64-512-bf16-b16"  # a shipped one: capacity emulates accelerators


def test_an_unwritable_report_folder_is_refused_before_any_work(
    tmp_path: Path, cli, read_only_folder: Path
) -> None:
    """``suite --report`` and ``capacity --report``/``--json`` check their folder first: one
    line naming it, exit 2, no data generated and no scenario run."""
    scenario = tiny_collage_scenario(tmp_path)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    (tmp_path / "suite.yaml").write_text("name: tiny\nscenarios: [a.yaml]\n")
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    results = tmp_path / "results"
    for report in (read_only_folder / "report", not_a_folder / "report"):
        attempts = {
            "suite": ["suite", tmp_path / "suite.yaml", "--report", report],
            "capacity --report": ["capacity", tmp_path / "a.yaml", "--report", report],
            "capacity --json": ["capacity", tmp_path / "a.yaml", "--json", report / "c.json"],
        }
        for name, args in attempts.items():
            done = cli(*args, "--results", results, "-o", f"training.profile={PROFILE}")
            assert done.returncode == 2, (name, done.stderr)
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith(f"error: cannot write in {report}"), (name, line)
            assert not results.exists() and not (tmp_path / "collage").exists(), name
