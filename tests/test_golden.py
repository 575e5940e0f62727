"""``harness compare`` and ``harness report`` in process on the golden run folders.

tests/data/golden/ holds three runs written by the real ``harness run`` on tiny generated
scenarios (tests/data/make_golden.py, ``make golden``): ``collage`` and ``video-cached``,
complete, and ``interrupted``, stopped by SIGTERM. Each test copies what it needs to its own
folder first, and expects only what those runs' own summary.json says, so the folders can be
regenerated on any machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import GOLDEN, Result, copy_golden

RUNS = ("collage", "video-cached", "interrupted")
NOT_MEASURED = "—"
# The headline table's rows this test reads: metric name in summary.json -> row label.
HEADLINE = {
    "samples_per_s": "training throughput (after warm-up)",
    "busy_pct": "loop busy % (measured step: compute / wall)",
    "data_wait_pct": "waiting for data",
    "fetch_latency_p50_ms": "fetch latency p50",
    "batch_wait_p50_ms": "batch wait p50",
    "loss_last": "training loss, last 5 steps",
    "miou": "held-out mIoU",
}


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def _edit(run: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = run / name
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _compare_json(cli: Callable[..., Result], *args: Any) -> tuple[int, dict[str, Any], str]:
    done = cli("compare", *args, "--json", "-")
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def _verdicts(document: dict[str, Any], scenario: int = 0) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in document["scenarios"][scenario]["metrics"]}


# --- the folders themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("name", RUNS)
def test_golden_folders_are_small_current_runs(name: str) -> None:
    run = GOLDEN / name
    files = {str(f.relative_to(run)): f.stat().st_size for f in run.rglob("*") if f.is_file()}
    assert {"manifest.json", "summary.json", "steps.parquet", "samples.parquet"} <= set(files)
    assert sum(files.values()) < 200_000, files  # kilobytes, not megabytes
    summary = _summary(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert summary["format"] == "harness-run-summary" and summary["format_version"] == 1
    assert manifest["format"] == "harness-run-manifest" and manifest["format_version"] == 1
    assert summary["run_id"] == manifest["run_id"]
    assert summary["scenario"] == manifest["scenario"]["name"] == f"golden-{name}"
    assert summary["complete"] is (name != "interrupted")
    if name == "interrupted":
        assert summary["reason"] == "interrupted by SIGTERM"
    assert summary["metrics"]["measured_steps"]["value"] >= 1  # headline numbers to check


# --- compare ------------------------------------------------------------------------------------


def test_a_golden_run_against_itself_is_ok(tmp_path: Path, cli) -> None:
    run = copy_golden("video-cached", tmp_path / "run")
    done = cli("compare", run, run)
    assert done.returncode == 0, done.stderr
    assert "golden-video-cached: 1 baseline run vs 1 current run" in done.stdout
    assert "single runs: the tolerance alone decides" in done.stdout
    assert "result: no regression" in done.stdout
    code, document, _ = _compare_json(cli, run, run)
    assert code == 0 and document["counts"].get("regressed", 0) == 0
    verdicts = _verdicts(document)
    summary = _summary(run)
    for name in ("samples_per_s", "busy_pct", "fetch_latency_p50_ms"):
        assert verdicts[name]["verdict"] == "ok"
        assert verdicts[name]["baseline"] == pytest.approx(summary["metrics"][name]["value"])
        assert verdicts[name]["change_pct"] == 0


def test_json_to_a_file_is_the_stdout_document_beside_the_table(tmp_path: Path, cli) -> None:
    run = copy_golden("video-cached", tmp_path / "run")
    to_stdout = cli("compare", run, run, "--json", "-")
    to_file = cli("compare", run, run, "--json", tmp_path / "comparison.json")
    assert to_file.returncode == to_stdout.returncode == 0, to_file.stderr
    assert (tmp_path / "comparison.json").read_text() == to_stdout.stdout
    assert "result: no regression" in to_file.stdout and "{" not in to_file.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"run", "comparison.json"}  # no temporary


def test_a_halved_throughput_regresses_by_the_tolerance(tmp_path: Path, cli) -> None:
    base = copy_golden("video-cached", tmp_path / "base")
    current = copy_golden("video-cached", tmp_path / "current")
    _edit(current, "summary.json", lambda s: s["metrics"]["samples_per_s"].update(value=1.0))
    _edit(base, "summary.json", lambda s: s["metrics"]["samples_per_s"].update(value=2.0))
    code, document, stderr = _compare_json(cli, base, current)
    assert code == 1, stderr
    found = _verdicts(document)["samples_per_s"]
    assert found["verdict"] == "regressed" and found["method"] == "tolerance only"
    assert found["change_pct"] == pytest.approx(-50.0)
    table = cli("compare", base, current)
    assert table.returncode == 1
    assert "REGRESSED: golden-video-cached samples_per_s" in table.stdout
    assert cli("compare", current, base).returncode == 0  # the other way: improved


def test_an_interrupted_run_is_compared_with_a_warning(tmp_path: Path, cli) -> None:
    run = copy_golden("interrupted", tmp_path / "run")
    done = cli("compare", run, run)
    assert done.returncode == 0, done.stderr
    assert "golden-interrupted [INCOMPLETE]" in done.stdout
    assert "incomplete" in done.stderr and "interrupted by SIGTERM" in done.stderr


def test_a_folder_of_golden_runs_is_grouped_by_scenario(tmp_path: Path, cli) -> None:
    for name in RUNS:
        copy_golden(name, tmp_path / "base" / name)
        copy_golden(name, tmp_path / "current" / name)
    code, document, stderr = _compare_json(cli, tmp_path / "base", tmp_path / "current")
    assert code == 0, stderr
    found = sorted(s["scenario"] for s in document["scenarios"])
    assert found == sorted(f"golden-{name}" for name in RUNS)
    assert all(len(s["baseline_runs"]) == 1 for s in document["scenarios"])


def test_runs_of_different_scenarios_have_nothing_to_compare(tmp_path: Path, cli) -> None:
    collage = copy_golden("collage", tmp_path / "collage")
    cached = copy_golden("video-cached", tmp_path / "cached")
    done = cli("compare", collage, cached)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "share no scenario" in line
    assert "golden-collage" in line and "golden-video-cached" in line  # both named


# --- report -------------------------------------------------------------------------------------
# One report of every golden run, plus a collage run with fields from a later harness of the
# same format version (see below), made once: a report takes seconds.

NEWER = "golden-collage-next"  # the collage run with new fields, under a name of its own


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``harness report RUNS --out OUT`` in process: its exit code, output, the HTML, and the
    summary of each run by scenario name."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("report")
    runs = [copy_golden(name, root / "runs" / name) for name in RUNS]
    runs.append(_with_new_fields(copy_golden("collage", root / "runs" / "collage-next"), NEWER))
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["report", str(root / "runs"), "--out", str(out)])
    return {
        "code": code,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "out": out,
        "html": (out / "report.html").read_text() if code == 0 else "",
        "summaries": {_summary(run)["scenario"]: _summary(run) for run in runs},
    }


def _headline(html: str, label: str) -> dict[str, str]:
    """The headline table's row ``label``: the text shown for each run, by column title."""
    table = re.search(r'<table id="table-summary".*?</table>', html, re.S)
    assert table is not None, "no headline table"
    titles = re.findall(r"<th[^>]*>(.*?)</th>", table.group(0), re.S)
    row = re.search(rf"<tr><td[^>]*>{re.escape(label)}</td>(.*?)</tr>", table.group(0), re.S)
    assert row is not None, label
    cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    assert len(cells) == len(titles) - 1, (titles, cells)  # the label's column is not in cells
    return dict(zip(titles[1:], cells, strict=True))


def _matches(shown: str, value: float | None) -> bool:
    """Whether ``shown`` is ``value`` as printed with the precision ``shown`` has."""
    if value is None:
        return shown == NOT_MEASURED
    if shown == NOT_MEASURED or not re.fullmatch(r"-?[\d,]+(\.\d+)?(e[-+]\d+)?", shown):
        return False
    if "e" in shown:
        return float(shown) == pytest.approx(value, rel=0.01)
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown.replace(",", "")) - value) <= 0.5 * 10**-decimals + 1e-9


def test_the_headline_check_can_fail() -> None:
    """The matcher rejects what it should: a wrong number, a dash for a value, a 0 for none."""
    assert _matches("12.35", 12.3456) and _matches("1,234", 1234.4) and _matches("—", None)
    assert _matches("2.5e-05", 0.000025)
    assert not _matches("12.36", 12.3456)
    assert not _matches("—", 12.0)
    assert not _matches("0.000", None)
    assert not _matches("12.3", 12.4)


def test_report_writes_html_and_pdf(report: dict[str, Any]) -> None:
    assert report["code"] == 0, report["stderr"]
    html, pdf = report["out"] / "report.html", report["out"] / "report.pdf"
    assert report["stdout"].split() == ["report:", str(html), "report:", str(pdf)]
    assert pdf.stat().st_size > 10_000 and pdf.read_bytes().startswith(b"%PDF")
    assert "4 runs of 4 scenarios on 1 machine" in report["html"]


@pytest.mark.parametrize("scenario", [*(f"golden-{name}" for name in RUNS), NEWER])
def test_report_shows_the_headline_numbers_of_summary_json(
    report: dict[str, Any], scenario: str
) -> None:
    assert report["code"] == 0, report["stderr"]
    summary = report["summaries"][scenario]
    for metric, label in HEADLINE.items():
        value = summary["metrics"].get(metric, {}).get("value")
        shown = _headline(report["html"], label)[scenario]
        assert _matches(shown, value), (metric, shown, value)


def test_every_headline_cell_is_the_value_in_summary_json(report: dict[str, Any]) -> None:
    """Cell by cell: every metric row of the headline table, for every run, shows the value of
    that run's summary.json (bytes rows in the unit the row names)."""
    from harness.report.sections_tables import SUMMARY_ROWS
    from harness.stats import mean_gpu_util

    assert report["code"] == 0, report["stderr"]
    scales = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    checked = 0
    for name, label, _unit in SUMMARY_ROWS:
        if f">{label}</td>" not in report["html"]:
            continue  # a row left out when no run has it (cache rows without a cached run)
        row = _headline(report["html"], label)
        unit = row.pop("unit")
        for scenario, shown in row.items():
            metrics = report["summaries"][scenario]["metrics"]
            value = (
                mean_gpu_util(metrics)
                if name == "gpu_util_mean"
                else metrics.get(name, {}).get("value")
            )
            if value is not None and unit in scales:
                value /= scales[unit]
            shown = shown.removesuffix("×")  # factors carry their sign
            assert _matches(shown, value), (label, scenario, shown, value)
            checked += 1
    assert checked >= 4 * 15


def test_report_shows_thresholds_and_the_interrupted_run(report: dict[str, Any]) -> None:
    html = report["html"]
    thresholds = re.search(r'<table id="table-thresholds".*?</table>', html, re.S)
    assert thresholds is not None
    for scenario, summary in report["summaries"].items():
        rows = [
            row
            for row in re.findall(r"<tr>(.*?)</tr>", thresholds.group(0), re.S)
            if re.match(rf"<td[^>]*>{re.escape(scenario)}</td>", row)
        ]
        assert len(rows) == len(summary["thresholds"]), scenario
        for row, verdict in zip(rows, summary["thresholds"], strict=True):
            expected = {True: "pass", False: "FAIL", None: "not measured"}[verdict["pass"]]
            assert verdict["threshold"] in row and f">{expected}</td>" in row, row
    notes = re.findall(r'<div class="note error"[^>]*>([^<]*)</div>', html)
    incomplete = [note for note in notes if "INCOMPLETE" in note]
    reason = report["summaries"]["golden-interrupted"]["reason"]
    assert len(incomplete) == 1 and f"INCOMPLETE: {reason}" in incomplete[0], notes


def test_report_bad_input_is_one_line_and_exit_2(tmp_path: Path, cli) -> None:
    run = copy_golden("collage", tmp_path / "run")
    _edit(run, "summary.json", lambda s: s.update(format_version=99))
    done = cli("report", run, "--out", tmp_path / "out")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run / 'summary.json'}: format version")
    assert not (tmp_path / "out" / "report.html").exists()


# --- additive changes within a format version --------------------------------------------------


def _with_new_fields(run: Path, name: str | None = None) -> Path:
    """Fields a later harness of the same format version might add, in both documents (and,
    given ``name``, the run's scenario renamed, to tell it apart in a report)."""

    def summary(document: dict[str, Any]) -> None:
        document["energy"] = {"joules": 1234.5, "source": "a future collector"}
        document["metrics"]["samples_per_s"]["stderr"] = 0.01  # a new key in a metric
        document["cross_checks"].append({"name": "a future check", "verdict": "fine"})
        if name:
            document["scenario"] = name

    def manifest(document: dict[str, Any]) -> None:
        document["container"] = {"image": "harness:next", "digest": "sha256:0"}
        document["hardware"]["nic_model"] = "Future NIC 800G"
        if name:
            document["scenario"]["name"] = name

    _edit(run, "summary.json", summary)
    _edit(run, "manifest.json", manifest)
    return run


def test_readers_accept_new_fields_within_the_format_version(
    tmp_path: Path, cli, report: dict[str, Any]
) -> None:
    plain = copy_golden("collage", tmp_path / "plain")
    newer = _with_new_fields(copy_golden("collage", tmp_path / "newer"))
    for baseline, current in ((plain, newer), (newer, plain), (newer, newer)):
        code, document, stderr = _compare_json(cli, baseline, current)
        assert code == 0, stderr
        assert "error:" not in stderr, stderr
        assert document["hardware_match"] is True  # a new hardware field is not new hardware
        verdicts = _verdicts(document)
        assert verdicts["samples_per_s"]["verdict"] == "ok"
        assert verdicts["samples_per_s"]["change_pct"] == 0
    # The report read the same kind of run (see test_report_shows_the_headline_numbers...).
    assert report["code"] == 0, report["stderr"]
    assert report["summaries"][NEWER]["energy"]["joules"] == 1234.5
    assert f">{NEWER}</th>" in report["html"]
