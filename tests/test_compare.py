"""``harness compare`` and ``harness baseline`` through the CLI entry point, in process.

The repeats are copies of one golden run (tests/data/golden/collage, written by the real
``harness run``: see tests/data/make_golden.py), five of them, each its own run id and repeat
number. Every judged metric gets a seeded run-to-run noise of up to 1 % per repeat, and the two
metrics the tests change are set to a steady series with 2 % spread around the golden value
(latency: around at least 2 ms, above the 0.25 ms floor under which no change is judged);
known changes are injected into copies of those run folders (throughput cut by a fifth, latency
up by a quarter). Every verdict here is so decided by the injected change, never by how busy this
machine is while the tests run. One end-to-end test (marked slow) makes real repeats with
``harness run`` and compares them through the CLI in a subprocess.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import GOLDEN, Result, copy_golden, run_harness, tiny_collage_scenario

from harness.results.document import FORMAT_VERSION

FAST = {"steps": 4, "warmup_steps": 1, "model": {"width": 8, "depth": 2}, "eval_samples": 8}
SPREAD = (1.0, 1.02, 0.98, 1.01, 0.99)  # per repeat, around the golden run's value
STEADIED = ("samples_per_s", "fetch_latency_p50_ms")
# A latency change under 0.25 ms is "ok" whatever its per cent (the absolute floor), and a tiny
# golden run may fetch in a fraction of that: its steady series is centred on at least this.
AT_LEAST = {"fetch_latency_p50_ms": 2.0}
NOISE = 0.01  # the other judged metrics: up to 1 % from repeat to repeat, seeded
SCENARIO = json.loads((GOLDEN / "collage" / "summary.json").read_text())["scenario"]


@pytest.fixture(scope="module")
def repeats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 5 repeats of one scenario, as ``harness run --repeat 5`` writes them."""
    results = tmp_path_factory.mktemp("compare") / "runs"
    results.mkdir()
    rng = np.random.default_rng(20240611)
    for index, factor in enumerate(SPREAD, start=1):
        run = copy_golden("collage", results / f"repeat-{index}")
        _make_repeat(run, index, factor, rng)
    return results


def _make_repeat(run: Path, index: int, factor: float, rng: np.random.Generator) -> None:
    """Turn a copy of the golden run into repeat ``index`` of ``len(SPREAD)``."""
    summary = json.loads((run / "summary.json").read_text())
    run_id = f"{summary['run_id']}-r{index}"
    summary["run_id"] = run_id
    for name, entry in summary["metrics"].items():
        if entry["value"] is None or entry["direction"] == "context":
            continue
        if name in STEADIED:
            entry["value"] = max(entry["value"], AT_LEAST.get(name, 0.0)) * factor
        else:
            entry["value"] *= 1 + rng.uniform(-NOISE, NOISE)
    (run / "summary.json").write_text(json.dumps(summary))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(run_id=run_id, repeat={"index": index, "of": len(SPREAD)})
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_the_repeats_are_five_distinct_runs_of_one_scenario(repeats: Path) -> None:
    summaries = [json.loads((r / "summary.json").read_text()) for r in _runs(repeats)]
    assert len({s["run_id"] for s in summaries}) == 5
    assert {s["scenario"] for s in summaries} == {SCENARIO}
    assert all(s["complete"] for s in summaries)
    for metric in (*STEADIED, "busy_pct"):
        values = [s["metrics"][metric]["value"] for s in summaries]
        assert all(v is not None and v > 0 for v in values), metric
        assert len(set(values)) == 5, metric  # not five identical numbers


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
    """A 20 % slowdown injected into copies of the runs: throughput / 1.25 is -20 %, latency
    x 1.25, in every repeat."""
    _copy(repeats, target, count)
    _scale(target, {"samples_per_s": 0.8, "fetch_latency_p50_ms": 1.25})
    return target


@pytest.fixture
def compare(cli: Callable[..., Result]) -> Callable[..., tuple[int, dict[str, Any], str]]:
    """``harness compare ARGS --json -``: exit code, the parsed document, stderr."""

    def call(*args: str) -> tuple[int, dict[str, Any], str]:
        done = cli("compare", *args, "--json", "-")
        document = json.loads(done.stdout) if done.stdout.strip() else {}
        return done.returncode, document, done.stderr

    return call


def _verdicts(document: dict[str, Any], scenario: int = 0) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in document["scenarios"][scenario]["metrics"]}


def test_the_same_runs_compare_ok(repeats: Path, cli) -> None:
    done = cli("compare", repeats, repeats)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "verdict" in line)
    for column in ("metric", "baseline", "current", "change %", "verdict"):
        assert column in header
    assert f"{SCENARIO}: 5 baseline runs vs 5 current runs" in done.stdout
    assert "result: no regression" in done.stdout
    rows = {
        line.split()[0]: line.split()[-1] for line in done.stdout.splitlines() if line[:2] == "  "
    }
    assert rows["samples_per_s"] == "ok" and rows["storage_bytes"] == "context"


def test_injected_slowdown_regresses_with_5_repeats(
    repeats: Path, tmp_path: Path, cli, compare
) -> None:
    slowed = _slowed(repeats, tmp_path / "slowed")
    code, document, stderr = compare(repeats, slowed)
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
    table = cli("compare", repeats, slowed)
    assert table.returncode == 1
    assert f"REGRESSED: {SCENARIO} samples_per_s, {SCENARIO} fetch_latency_p50_ms" in table.stdout
    # The other way round, the same change is an improvement, and passes.
    code, document, _ = compare(slowed, repeats)
    assert code == 0 and _verdicts(document)["samples_per_s"]["verdict"] == "improved"


def test_single_runs_are_judged_by_the_tolerance_alone(
    repeats: Path, tmp_path: Path, cli, compare
) -> None:
    one = _runs(repeats)[0]
    slowed = _slowed(repeats, tmp_path / "slowed", count=1)
    done = cli("compare", one, _runs(slowed)[0])
    assert done.returncode == 1, done.stderr
    assert "single runs: the tolerance alone decides" in done.stdout
    code, document, _ = compare(one, slowed)
    assert code == 1
    assert _verdicts(document)["samples_per_s"]["method"] == "tolerance only"


def test_three_repeats_cannot_be_significant_and_say_so(repeats: Path, tmp_path: Path, cli) -> None:
    base = _copy(repeats, tmp_path / "base", count=3)
    slowed = _slowed(repeats, tmp_path / "slowed", count=3)
    done = cli("compare", base, slowed)
    assert done.returncode == 0, done.stderr
    assert "3 vs 3 runs can never be significant" in done.stdout
    assert "inconclusive: samples_per_s" in done.stdout


def test_tolerances_from_the_scenario_and_the_command_line(
    repeats: Path, tmp_path: Path, cli, compare
) -> None:
    slowed = _slowed(repeats, tmp_path / "slowed")
    code, document, _ = compare(repeats, slowed, "--tolerance", "samples_per_s=30")
    assert code == 1  # the latency still regressed
    found = _verdicts(document)["samples_per_s"]
    assert found["verdict"] == "ok" and found["tolerance_source"] == "command line"

    def loosen(manifest: dict[str, Any]) -> None:
        manifest["scenario"]["thresholds"]["tolerance_pct"] = {
            "samples_per_s": 25,
            "fetch_latency_p50_ms": 30,
        }

    _edit(slowed, "manifest.json", loosen)
    code, document, stderr = compare(repeats, slowed)
    assert code == 0, stderr
    assert _verdicts(document)["samples_per_s"]["tolerance_source"] == "scenario"
    assert "settings differ" in stderr  # the scenario changed: said, not hidden
    typo = cli("compare", repeats, slowed, "--tolerance", "sample_per_s=5")
    assert typo.returncode == 2
    assert "did you mean samples_per_s" in typo.stderr
    bad = cli("compare", repeats, slowed, "--tolerance", "samples_per_s")
    assert bad.returncode == 2 and "METRIC=PCT" in bad.stderr


def _other_cpu(manifest: dict[str, Any]) -> None:
    manifest["hardware"]["cpu_model"] = "Some Other CPU 9000"


def test_other_hardware_is_refused_unless_allowed(
    repeats: Path, tmp_path: Path, cli, compare
) -> None:
    other = _copy(repeats, tmp_path / "other")
    _edit(other, "manifest.json", _other_cpu)
    refused = cli("compare", repeats, other)
    assert refused.returncode == 2 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "different hardware" in lines[0]
    assert "Some Other CPU 9000" in lines[0] and "--allow-hardware-mismatch" in lines[0]
    code, document, stderr = compare(repeats, other, "--allow-hardware-mismatch")
    assert code == 0 and document["hardware_match"] is False
    assert "different hardware" in stderr


def test_incomplete_runs_are_marked_and_missing_metrics_listed(
    repeats: Path, tmp_path: Path, cli, compare
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
    done = cli("compare", repeats, current)
    assert done.returncode == 0, done.stderr
    assert "incomplete" in done.stderr and "interrupted by SIGTERM" in done.stderr
    assert f"{SCENARIO} [INCOMPLETE]" in done.stdout
    missing_line = next(line for line in done.stderr.splitlines() if "not measured" in line)
    assert "busy_pct" in missing_line and "miou" in missing_line
    code, document, _ = compare(repeats, current)
    assert code == 0
    scenario = document["scenarios"][0]
    assert scenario["incomplete"]["current"][0].endswith("(interrupted by SIGTERM)")
    assert {"busy_pct", "miou"} <= set(scenario["missing"]["in_current"])
    assert "busy_pct" not in scenario["missing"]["in_baseline"]
    busy = _verdicts(document)["busy_pct"]
    assert busy["verdict"] == "missing" and busy["current"] is None  # never zero
    assert busy["current_values"] == [None] * 5


def test_bad_input_is_one_line_and_exit_2(repeats: Path, tmp_path: Path, cli) -> None:
    other_version = _copy(repeats, tmp_path / "v2", count=1)

    def newer(summary: dict[str, Any]) -> None:
        summary["format_version"] = FORMAT_VERSION + 1

    _edit(other_version, "summary.json", newer)
    cases = {
        f"format version {FORMAT_VERSION + 1}": (repeats, other_version),
        "no such run folder": (repeats, tmp_path / "nowhere"),
        "no such run folder, summary file or saved baseline": (repeats, "nosuchname"),
        "--alpha": (repeats, repeats, "--alpha", "1.5"),
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["holds no run"] = (repeats, empty)
    for expected, args in cases.items():
        done = cli("compare", *args)
        assert done.returncode == 2, (expected, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (expected, lines)


def test_summary_files_and_suites_of_several_scenarios(
    repeats: Path, tmp_path: Path, cli, compare
) -> None:
    run = _runs(repeats)[0]
    code, document, stderr = compare(run / "summary.json", run)
    assert code == 0, stderr
    assert _verdicts(document)["samples_per_s"]["method"] == "tolerance only"
    # A summary copied away from its manifest: its hardware is unknown, so it is not assumed.
    alone = tmp_path / "alone.json"
    shutil.copy(run / "summary.json", alone)
    refused = cli("compare", alone, run)
    assert refused.returncode == 2 and "cannot tell whether" in refused.stderr
    code, document, _ = compare(alone, run, "--allow-hardware-mismatch")
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
    code, document, stderr = compare(suite, slowed)
    assert code == 1, stderr
    assert [s["scenario"] for s in document["scenarios"]] == [SCENARIO, "twin"]
    for scenario in (0, 1):
        assert _verdicts(document, scenario)["samples_per_s"]["verdict"] == "regressed"
    code, document, stderr = compare(suite, repeats)
    assert code == 0 and "only in baseline, not compared: twin" in stderr
    assert document["scenarios_only_in"]["baseline"] == ["twin"]


def test_baselines_are_saved_per_hardware_listed_and_compared_by_name(
    repeats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli, compare
) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv("HARNESS_BASELINES", str(store))
    empty = cli("baseline", "list")
    assert empty.returncode == 0 and "no baselines" in empty.stdout
    saved = cli("baseline", "save", repeats, "--name", "main")
    assert saved.returncode == 0, saved.stderr
    (path,) = store.glob("*/main.json")
    document = json.loads(path.read_text())
    assert document["format"] == "harness-baseline" and document["format_version"] == 1
    assert document["hardware_key"] == path.parent.name
    assert set(document["hardware"]) >= {"gpu_model", "gpu_count", "cpu_model", "storage_device"}
    assert len(document["scenarios"][SCENARIO]["metrics"]["samples_per_s"]["values"]) == 5
    listed = cli("baseline", "list")
    assert listed.returncode == 0 and "main" in listed.stdout
    assert f"{SCENARIO} x5" in listed.stdout and path.parent.name in listed.stdout

    assert cli("compare", "main", repeats).returncode == 0
    slowed = _slowed(repeats, tmp_path / "slowed")
    code, result, _ = compare("main", slowed)
    assert code == 1 and result["baseline"]["kind"] == "baseline"
    assert result["baseline"]["file"] == str(path)

    # A baseline saved on other hardware only: refused, named.
    other = _copy(repeats, tmp_path / "other")
    _edit(other, "manifest.json", _other_cpu)
    assert cli("baseline", "save", other, "--name", "nightly").returncode == 0
    refused = cli("compare", "nightly", repeats)
    assert refused.returncode == 2 and "different hardware" in refused.stderr
    # Both machines keep a "main": each compares against its own.
    assert cli("baseline", "save", other, "--name", "main").returncode == 0
    assert len(list(store.glob("*/main.json"))) == 2
    assert cli("compare", "main", repeats).returncode == 0
    assert cli("compare", "main", other).returncode == 0

    # Refusals: a bad name, incomplete runs, a baseline file of another format version.
    assert cli("baseline", "save", repeats, "--name", "../up").returncode == 2
    partial = _copy(repeats, tmp_path / "partial", count=1)
    _edit(partial, "summary.json", lambda s: s.update(complete=False, reason="killed"))
    refused = cli("baseline", "save", partial, "--name", "partial")
    assert refused.returncode == 2 and "complete runs" in refused.stderr
    document["format_version"] = 99
    path.write_text(json.dumps(document))
    newer = cli("compare", "main", repeats)
    assert newer.returncode == 2 and "format version 99" in newer.stderr
    assert "unreadable" in cli("baseline", "list").stdout


@pytest.mark.slow
def test_end_to_end_over_real_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real repeats from ``harness run --repeat 3``, compared and saved through the real CLI in
    a subprocess. With 3 + 3 repeats no change can be significant, so every verdict below is
    decided whatever the runs measured."""
    scenario = tiny_collage_scenario(
        tmp_path, dataset__generate__width=1024, dataset__generate__height=768
    )
    scenario["training"] = dict(FAST)
    scenario["pipeline"].update({"batch_size": 4, "workers": 1, "crop": 64})
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    done = run_harness("datagen", str(path))
    assert done.returncode == 0, done.stderr
    base = tmp_path / "base"
    dlio = tmp_path / "dlio.json"
    done = run_harness(
        "run", str(path), "--repeat", "3", "--results", str(base), "--quiet",
        "--export", "dlio", "--export-target", str(dlio),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(_runs(base)) == 3
    exported = json.loads(dlio.read_text())  # `harness run --export`: the 3 repeats as epochs
    assert exported["epochs"] == 3 and len(exported["metric"]["train_au_percentage"]) == 3
    summary = json.loads((_runs(base)[0] / "summary.json").read_text())
    assert {"disk_r_per_s", "disk_util_pct", "disk_aqu_sz"} <= set(summary["metrics"])
    same = run_harness("compare", str(base), str(base))
    assert same.returncode == 0, same.stderr
    assert "tiny-collage: 3 baseline runs vs 3 current runs" in same.stdout
    assert "result: no regression" in same.stdout
    slowed = _slowed(base, tmp_path / "slowed")
    done = run_harness("compare", str(base), str(slowed), "--json", "-")
    assert done.returncode == 0, done.stderr
    found = _verdicts(json.loads(done.stdout))["samples_per_s"]
    assert found["verdict"] == "inconclusive" and found["method"] == "mann-whitney"
    assert found["change_pct"] == pytest.approx(-20.0, abs=0.01)  # medians scale exactly
    monkeypatch.setenv("HARNESS_BASELINES", str(tmp_path / "store"))
    saved = run_harness("baseline", "save", str(base), "--name", "main")
    assert saved.returncode == 0, saved.stderr
    table = run_harness("compare", "main", str(slowed))
    assert table.returncode == 0, table.stderr
    assert "3 vs 3 runs can never be significant" in table.stdout
    assert "inconclusive: samples_per_s" in table.stdout


def test_tolerance_arguments_and_hardware_keys() -> None:
    from harness.compare.commands import parse_tolerances
    from harness.compare.hardware import hardware_differences, hardware_key
    from harness.compare.sides import setting_differences
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


JUNIT_SCHEMA = GOLDEN.parent / "junit" / "junit-10.xsd"  # Jenkins xUnit plugin's JUnit schema


def test_junit_and_the_github_step_summary_carry_the_verdicts(
    repeats: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--junit FILE``: valid against the JUnit schema Jenkins' xUnit plugin (and GitLab's
    reader) use, tests/data/junit/junit-10.xsd; a regression is a failure with its numbers, an
    inconclusive or missing metric a skip with its reason; the Markdown job summary is appended
    to ``$GITHUB_STEP_SUMMARY``."""
    import xml.etree.ElementTree as ET

    import xmlschema

    slowed = _slowed(repeats, tmp_path / "slowed")
    _edit(slowed, "summary.json", lambda s: s["metrics"].pop("miou"))
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    report = tmp_path / "junit.xml"
    done = cli("compare", repeats, slowed, "--junit", report)
    assert done.returncode == 1, done.stderr
    xmlschema.XMLSchema(JUNIT_SCHEMA).validate(report)  # raises on any violation
    root = ET.parse(report).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == SCENARIO
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    document = json.loads(cli("compare", repeats, slowed, "--json", "-").stdout)
    verdicts = _verdicts(document)
    assert set(cases) == set(verdicts)
    assert int(suite.get("tests")) == len(verdicts) == int(root.get("tests"))
    failure = cases["samples_per_s"].find("failure")
    assert failure is not None and failure.get("type") == "regressed"
    judged = verdicts["samples_per_s"]
    assert "-20.0 %" in failure.get("message") and "5 vs 5 runs" in failure.get("message")
    assert f"{judged['baseline']:.4g}" in failure.get("message")
    skipped = cases["miou"].find("skipped")
    assert skipped is not None and skipped.get("message").startswith("missing: ")
    assert cases["busy_pct"].find("failure") is None and cases["busy_pct"].find("skipped") is None
    failed = [name for name, case in cases.items() if case.find("failure") is not None]
    assert sorted(failed) == sorted(n for n, v in verdicts.items() if v["verdict"] == "regressed")
    assert int(suite.get("failures")) == len(failed)
    assert int(suite.get("skipped")) == sum(
        v["verdict"] in ("inconclusive", "missing") for v in verdicts.values()
    )
    summary = step_summary.read_text()
    assert summary.startswith("earlier step\n## harness compare")  # appended, not replaced
    row = next(line for line in summary.splitlines() if line.startswith("| samples_per_s |"))
    assert "❌ regressed" in row and "-20.0" in row
    assert "- missing: `miou`:" in summary

    few = _copy(repeats, tmp_path / "few", count=3)  # 3 + 3 runs: never significant
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    done = cli("compare", few, _slowed(repeats, tmp_path / "few-slowed", 3), "--junit", report)
    assert done.returncode == 0, done.stderr
    xmlschema.XMLSchema(JUNIT_SCHEMA).validate(report)
    case = next(c for c in ET.parse(report).iter("testcase") if c.get("name") == "samples_per_s")
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message").startswith("inconclusive: ")
    unwritable = cli("compare", repeats, slowed, "--junit", tmp_path / "no" / "such" / "x.xml")
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
    assert "x.xml" in unwritable.stderr
