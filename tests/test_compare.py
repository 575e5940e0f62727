"""``harness compare`` and ``harness baseline`` through the real CLI, on real runs.

Five real repeats of a tiny collage scenario are made once for the module. Tiny runs (3 measured
steps) are far noisier than real ones, so the two metrics the tests change are then set to a
steady series with 2 % spread around what the runs measured; known changes are injected into
copies of those run folders (throughput cut by a fifth, latency up by a quarter). Every verdict
here is so decided by the injected change, never by how busy this machine is while the tests
run; everything else in the folders is what the runs wrote.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_harness, tiny_collage_scenario

FAST = {"steps": 4, "warmup_steps": 1, "model": {"width": 8, "depth": 2}, "eval_samples": 8}
SPREAD = (1.0, 1.02, 0.98, 1.01, 0.99)  # per repeat, around the runs' median
STEADIED = ("samples_per_s", "fetch_latency_p50_ms")


@pytest.fixture(scope="module")
def repeats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 5 real repeats of one scenario (``harness run --repeat 5``)."""
    root = tmp_path_factory.mktemp("compare")
    scenario = tiny_collage_scenario(
        root, dataset__generate__width=1024, dataset__generate__height=768
    )
    scenario["training"] = dict(FAST)
    scenario["pipeline"].update({"batch_size": 4, "workers": 1, "crop": 64})
    path = root / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    done = run_harness("datagen", str(path))
    assert done.returncode == 0, done.stderr
    results = root / "runs"
    done = run_harness("run", str(path), "--repeat", "5", "--results", str(results), "--quiet")
    assert done.returncode == 0, done.stderr
    assert len(list(results.iterdir())) == 5
    for metric in STEADIED:
        _steady(results, metric)
    return results


def _steady(folder: Path, metric: str) -> None:
    """Replace ``metric`` in the runs of ``folder`` by their median times SPREAD."""
    runs = _runs(folder)
    values = sorted(
        json.loads((r / "summary.json").read_text())["metrics"][metric]["value"] for r in runs
    )
    for run, factor in zip(runs, SPREAD, strict=True):
        path = run / "summary.json"
        summary = json.loads(path.read_text())
        summary["metrics"][metric]["value"] = values[len(values) // 2] * factor
        path.write_text(json.dumps(summary))


def _runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _copy(source: Path, target: Path, count: int | None = None) -> Path:
    """``count`` of the run folders of ``source`` copied into ``target``."""
    target.mkdir(parents=True)
    for run in _runs(source)[:count]:
        shutil.copytree(run, target / run.name)
    return target


def _edit(folder: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the JSON document ``name`` of every run under ``folder``."""
    runs = _runs(folder) if not (folder / name).exists() else [folder]
    for run in runs:
        path = run / name
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document))


def _scale(folder: Path, factors: dict[str, float]) -> None:
    """Multiply metrics by factors: a known change, whatever this machine's noise."""

    def change(summary: dict[str, Any]) -> None:
        for metric, factor in factors.items():
            summary["metrics"][metric]["value"] *= factor

    _edit(folder, "summary.json", change)


def _slowed(repeats: Path, target: Path, count: int | None = None) -> Path:
    """A 20 % slowdown injected into copies of real runs: throughput / 1.25 is -20 %, latency
    x 1.25, in every repeat."""
    _copy(repeats, target, count)
    _scale(target, {"samples_per_s": 0.8, "fetch_latency_p50_ms": 1.25})
    return target


def _compare(*args: str) -> tuple[int, dict[str, Any], str]:
    done = run_harness("compare", *args, "--json")
    document = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, document, done.stderr


def _verdicts(document: dict[str, Any], scenario: int = 0) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in document["scenarios"][scenario]["metrics"]}


def test_the_same_runs_compare_ok(repeats: Path) -> None:
    done = run_harness("compare", str(repeats), str(repeats))
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "verdict" in line)
    for column in ("metric", "baseline", "current", "change %", "verdict"):
        assert column in header
    assert "tiny-collage: 5 baseline runs vs 5 current runs" in done.stdout
    assert "result: no regression" in done.stdout
    rows = {
        line.split()[0]: line.split()[-1] for line in done.stdout.splitlines() if line[:2] == "  "
    }
    assert rows["samples_per_s"] == "ok" and rows["storage_bytes"] == "context"


def test_injected_slowdown_regresses_with_5_repeats(repeats: Path, tmp_path: Path) -> None:
    slowed = _slowed(repeats, tmp_path / "slowed")
    code, document, stderr = _compare(str(repeats), str(slowed))
    assert code == 1, stderr
    assert document["format"] == "harness-comparison" and document["format_version"] == 1
    verdicts = _verdicts(document)
    for metric in ("samples_per_s", "fetch_latency_p50_ms"):
        found = verdicts[metric]
        assert found["verdict"] == "regressed", found
        assert found["method"] == "mann-whitney"
        assert found["p_value"] == pytest.approx(2 / 252)
        assert len(found["baseline_values"]) == len(found["current_values"]) == 5
    assert verdicts["samples_per_s"]["change_pct"] == pytest.approx(-20.0, abs=0.01)
    assert verdicts["samples_per_s"]["direction"] == "higher"
    assert verdicts["fetch_latency_p50_ms"]["direction"] == "lower"
    assert document["counts"]["regressed"] == 2 and document["exit_code"] == 1
    # The table says the same, in words.
    table = run_harness("compare", str(repeats), str(slowed))
    assert table.returncode == 1
    assert (
        "REGRESSED: tiny-collage samples_per_s, tiny-collage fetch_latency_p50_ms" in table.stdout
    )
    # The other way round, the same change is an improvement, and passes.
    code, document, _ = _compare(str(slowed), str(repeats))
    assert code == 0 and _verdicts(document)["samples_per_s"]["verdict"] == "improved"


def test_single_runs_are_judged_by_the_tolerance_alone(repeats: Path, tmp_path: Path) -> None:
    one = _runs(repeats)[0]
    slowed = _slowed(repeats, tmp_path / "slowed", count=1)
    done = run_harness("compare", str(one), str(_runs(slowed)[0]))
    assert done.returncode == 1, done.stderr
    assert "single runs: the tolerance alone decides" in done.stdout
    code, document, _ = _compare(str(one), str(slowed))
    assert code == 1
    assert _verdicts(document)["samples_per_s"]["method"] == "tolerance only"


def test_three_repeats_cannot_be_significant_and_say_so(repeats: Path, tmp_path: Path) -> None:
    base = _copy(repeats, tmp_path / "base", count=3)
    slowed = _slowed(repeats, tmp_path / "slowed", count=3)
    done = run_harness("compare", str(base), str(slowed))
    assert done.returncode == 0, done.stderr
    assert "3 vs 3 runs can never be significant" in done.stdout
    assert "inconclusive: samples_per_s" in done.stdout


def test_tolerances_from_the_scenario_and_the_command_line(repeats: Path, tmp_path: Path) -> None:
    slowed = _slowed(repeats, tmp_path / "slowed")
    code, document, _ = _compare(str(repeats), str(slowed), "--tolerance", "samples_per_s=30")
    assert code == 1  # the latency still regressed
    found = _verdicts(document)["samples_per_s"]
    assert found["verdict"] == "ok" and found["tolerance_source"] == "command line"

    def loosen(manifest: dict[str, Any]) -> None:
        manifest["scenario"]["thresholds"]["tolerance_pct"] = {
            "samples_per_s": 25,
            "fetch_latency_p50_ms": 30,
        }

    _edit(slowed, "manifest.json", loosen)
    code, document, stderr = _compare(str(repeats), str(slowed))
    assert code == 0, stderr
    assert _verdicts(document)["samples_per_s"]["tolerance_source"] == "scenario"
    assert "settings differ" in stderr  # the scenario changed: said, not hidden
    typo = run_harness("compare", str(repeats), str(slowed), "--tolerance", "sample_per_s=5")
    assert typo.returncode == 2
    assert "did you mean samples_per_s" in typo.stderr
    bad = run_harness("compare", str(repeats), str(slowed), "--tolerance", "samples_per_s")
    assert bad.returncode == 2 and "METRIC=PCT" in bad.stderr


def _other_cpu(manifest: dict[str, Any]) -> None:
    manifest["hardware"]["cpu_model"] = "Some Other CPU 9000"


def test_other_hardware_is_refused_unless_allowed(repeats: Path, tmp_path: Path) -> None:
    other = _copy(repeats, tmp_path / "other")
    _edit(other, "manifest.json", _other_cpu)
    refused = run_harness("compare", str(repeats), str(other))
    assert refused.returncode == 2 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "different hardware" in lines[0]
    assert "Some Other CPU 9000" in lines[0] and "--allow-hardware-mismatch" in lines[0]
    code, document, stderr = _compare(str(repeats), str(other), "--allow-hardware-mismatch")
    assert code == 0 and document["hardware_match"] is False
    assert "different hardware" in stderr


def test_incomplete_runs_are_marked_and_missing_metrics_listed(
    repeats: Path, tmp_path: Path
) -> None:
    current = _copy(repeats, tmp_path / "current")
    first = _runs(current)[0]

    def interrupted(summary: dict[str, Any]) -> None:
        summary["complete"] = False
        summary["reason"] = "interrupted by SIGTERM"

    def lost_metric(summary: dict[str, Any]) -> None:
        del summary["metrics"]["miou"]
        summary["metrics"]["busy_pct"]["value"] = None

    _edit(first, "summary.json", interrupted)
    _edit(current, "summary.json", lost_metric)
    done = run_harness("compare", str(repeats), str(current))
    assert done.returncode == 0, done.stderr
    assert "incomplete" in done.stderr and "interrupted by SIGTERM" in done.stderr
    assert "tiny-collage [INCOMPLETE]" in done.stdout
    # (Tiny runs may also miss collector rates: under 2 samples in their few measured steps.)
    missing_line = next(line for line in done.stderr.splitlines() if "not measured" in line)
    assert "busy_pct" in missing_line and "miou" in missing_line
    code, document, _ = _compare(str(repeats), str(current))
    assert code == 0
    scenario = document["scenarios"][0]
    assert scenario["incomplete"]["current"][0].endswith("(interrupted by SIGTERM)")
    assert {"busy_pct", "miou"} <= set(scenario["missing"]["in_current"])
    assert "busy_pct" not in scenario["missing"]["in_baseline"]
    busy = _verdicts(document)["busy_pct"]
    assert busy["verdict"] == "missing" and busy["current"] is None  # never zero
    assert busy["current_values"] == [None] * 5


def test_bad_input_is_one_line_and_exit_2(repeats: Path, tmp_path: Path) -> None:
    other_version = _copy(repeats, tmp_path / "v2", count=1)

    def newer(summary: dict[str, Any]) -> None:
        summary["format_version"] = 2

    _edit(other_version, "summary.json", newer)
    cases = {
        "format version 2": (str(repeats), str(other_version)),
        "no such run folder": (str(repeats), str(tmp_path / "nowhere")),
        "no such run folder, summary file or saved baseline": (str(repeats), "nosuchname"),
        "--alpha": (str(repeats), str(repeats), "--alpha", "1.5"),
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["holds no run"] = (str(repeats), str(empty))
    for expected, args in cases.items():
        done = run_harness("compare", *args)
        assert done.returncode == 2, (expected, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (expected, lines)


def test_summary_files_and_suites_of_several_scenarios(repeats: Path, tmp_path: Path) -> None:
    run = _runs(repeats)[0]
    code, document, stderr = _compare(str(run / "summary.json"), str(run))
    assert code == 0, stderr
    assert _verdicts(document)["samples_per_s"]["method"] == "tolerance only"
    # A summary copied away from its manifest: its hardware is unknown, so it is not assumed.
    alone = tmp_path / "alone.json"
    shutil.copy(run / "summary.json", alone)
    refused = run_harness("compare", str(alone), str(run))
    assert refused.returncode == 2 and "cannot tell whether" in refused.stderr
    code, document, _ = _compare(str(alone), str(run), "--allow-hardware-mismatch")
    assert code == 0 and document["hardware_match"] is None
    # A suite's results: two scenarios in one folder, grouped by name, judged one by one.
    suite = _copy(repeats, tmp_path / "suite")
    for run in _runs(repeats):
        twin = suite / f"{run.name}-twin"
        shutil.copytree(run, twin)

        def rename(document: dict[str, Any]) -> None:
            if "scenario" in document and isinstance(document["scenario"], dict):
                document["scenario"]["name"] = "twin"
            else:
                document["scenario"] = "twin"

        _edit(twin, "summary.json", rename)
        _edit(twin, "manifest.json", rename)
    slowed = _slowed(suite, tmp_path / "slowed")
    code, document, stderr = _compare(str(suite), str(slowed))
    assert code == 1, stderr
    assert [s["scenario"] for s in document["scenarios"]] == ["tiny-collage", "twin"]
    for scenario in (0, 1):
        assert _verdicts(document, scenario)["samples_per_s"]["verdict"] == "regressed"
    code, document, stderr = _compare(str(suite), str(repeats))
    assert code == 0 and "only in baseline, not compared: twin" in stderr
    assert document["scenarios_only_in"]["baseline"] == ["twin"]


def test_baselines_are_saved_per_hardware_listed_and_compared_by_name(
    repeats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv("HARNESS_BASELINES", str(store))
    empty = run_harness("baseline", "list")
    assert empty.returncode == 0 and "no baselines" in empty.stdout
    saved = run_harness("baseline", "save", str(repeats), "--name", "main")
    assert saved.returncode == 0, saved.stderr
    (path,) = store.glob("*/main.json")
    document = json.loads(path.read_text())
    assert document["format"] == "harness-baseline" and document["format_version"] == 1
    assert document["hardware_key"] == path.parent.name
    assert set(document["hardware"]) >= {"gpu_model", "gpu_count", "cpu_model", "storage_device"}
    assert len(document["scenarios"]["tiny-collage"]["metrics"]["samples_per_s"]["values"]) == 5
    listed = run_harness("baseline", "list")
    assert listed.returncode == 0 and "main" in listed.stdout
    assert "tiny-collage x5" in listed.stdout and path.parent.name in listed.stdout

    assert run_harness("compare", "main", str(repeats)).returncode == 0
    slowed = _slowed(repeats, tmp_path / "slowed")
    code, result, _ = _compare("main", str(slowed))
    assert code == 1 and result["baseline"]["kind"] == "baseline"
    assert result["baseline"]["file"] == str(path)

    # A baseline saved on other hardware only: refused, named.
    other = _copy(repeats, tmp_path / "other")
    _edit(other, "manifest.json", _other_cpu)
    assert run_harness("baseline", "save", str(other), "--name", "nightly").returncode == 0
    refused = run_harness("compare", "nightly", str(repeats))
    assert refused.returncode == 2 and "different hardware" in refused.stderr
    # Both machines keep a "main": each compares against its own.
    assert run_harness("baseline", "save", str(other), "--name", "main").returncode == 0
    assert len(list(store.glob("*/main.json"))) == 2
    assert run_harness("compare", "main", str(repeats)).returncode == 0
    assert run_harness("compare", "main", str(other)).returncode == 0

    # Refusals: a bad name, incomplete runs, a baseline file of another format version.
    assert run_harness("baseline", "save", str(repeats), "--name", "../up").returncode == 2
    partial = _copy(repeats, tmp_path / "partial", count=1)
    _edit(partial, "summary.json", lambda s: s.update(complete=False, reason="killed"))
    refused = run_harness("baseline", "save", str(partial), "--name", "partial")
    assert refused.returncode == 2 and "complete runs" in refused.stderr
    document["format_version"] = 99
    path.write_text(json.dumps(document))
    newer = run_harness("compare", "main", str(repeats))
    assert newer.returncode == 2 and "format version 99" in newer.stderr
    assert "unreadable" in run_harness("baseline", "list").stdout


def test_tolerance_arguments_and_hardware_keys() -> None:
    from harness.baselines import (
        hardware_differences,
        hardware_key,
        parse_tolerances,
        setting_differences,
    )
    from harness.errors import HarnessError

    assert parse_tolerances(["samples_per_s=5", "gpu_util_pct = 7.5%"]) == {
        "samples_per_s": 5.0,
        "gpu_util_pct": 7.5,
    }
    for bad in ("samples_per_s", "=5", "samples_per_s=-1", "samples_per_s=fast", "x=nan"):
        with pytest.raises(HarnessError, match="METRIC=PCT"):
            parse_tolerances([bad])
    one = {"gpu_model": "not available: NVML Shared Library Not Found", "cpu_model": "EPYC"}
    same = {"gpu_model": "not available: nvidia-ml-py is not installed", "cpu_model": "EPYC"}
    assert hardware_key(one) == hardware_key(same)  # why a GPU is unseen is not hardware
    assert hardware_differences(one, same) == []
    other = {**one, "cpu_model": "Xeon"}
    assert hardware_differences(one, other) == ["cpu_model 'EPYC' vs 'Xeon'"]
    assert hardware_key(one) != hardware_key(other)
    a = {"name": "s", "description": "x", "pipeline": {"workers": 1, "crop": 64}}
    b = {"name": "s", "description": "y", "pipeline": {"workers": 2, "crop": 64}}
    assert setting_differences(a, b) == ["pipeline.workers 1 -> 2"]
    assert setting_differences(a, None) == []
