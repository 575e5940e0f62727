"""The run folder's documents as typed models (``harness.results.summary_file`` and
``manifest_file``): the golden files read and write back byte for byte, and a malformed file is
refused in one line naming the file and the field, by the reader and by ``harness report`` and
``harness compare`` (exit 2, no traceback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import GOLDEN, copy_golden

from harness import results
from harness.errors import HarnessError
from harness.results.document import FORMAT_VERSION, document_fields

GOLDEN_RUNS = ("collage", "video-cached", "interrupted")


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=1))


@pytest.mark.parametrize("name", GOLDEN_RUNS)
def test_golden_documents_read_and_write_back_byte_for_byte(name: str, tmp_path: Path) -> None:
    """What the writer produces from a model is what the golden folder holds: same keys, same
    order, same values (unset fields stay unwritten, newer ones stay where they were)."""
    golden = GOLDEN / name
    summary = results.read_summary(golden / "summary.json")
    manifest = results.read_manifest(golden / "manifest.json")
    results.write_summary(tmp_path, summary)
    results.write_manifest_file(tmp_path, manifest)
    for file in ("summary.json", "manifest.json"):
        assert (tmp_path / file).read_bytes() == (golden / file).read_bytes(), file


def test_the_models_carry_what_readers_ask_for() -> None:
    collage = results.RunFolder.read(GOLDEN / "collage")
    assert collage.summary is not None and collage.manifest is not None
    assert collage.summary.complete and collage.summary.reason is None
    # the model gives back what the file holds (the golden numbers are whatever its run measured)
    raw = json.loads((GOLDEN / "collage" / "summary.json").read_text())
    assert collage.summary.value("samples_per_s") == raw["metrics"]["samples_per_s"]["value"]
    assert collage.metrics["samples_per_s"]["unit"] == "samples/s"  # the plain view
    assert collage.summary.thresholds[0].passed is True
    assert collage.summary.collectors.io_device == "vda"
    assert collage.manifest.device == "cpu" and collage.manifest.repeat is None
    manifest = json.loads((GOLDEN / "collage" / "manifest.json").read_text())
    assert collage.started == manifest["started"]
    assert collage.hardware_table["cpu_model"] == "AMD EPYC"
    dumped = document_fields(collage.summary)
    assert list(dumped)[:4] == ["run_id", "scenario", "complete", "reason"]
    interrupted = results.RunFolder.read(GOLDEN / "interrupted")
    assert not interrupted.complete and interrupted.reason


def test_fields_of_a_newer_harness_are_kept_and_missing_optional_ones_are_not_invented(
    tmp_path: Path,
) -> None:
    run = copy_golden("collage", tmp_path / "run")

    def newer(summary: dict[str, Any]) -> None:
        summary["racks"] = [{"name": "a"}]  # an additive change within format version 1
        del summary["iou_per_class"]

    _edit(run / "summary.json", newer)
    summary = results.read_summary(run / "summary.json")
    written = document_fields(summary)
    assert written["racks"] == [{"name": "a"}] and "iou_per_class" not in written
    assert summary.iou_per_class is None


# (case, change to the summary, what the one line says after the file's name)
BAD_SUMMARIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "wrong-typed metric": (
        lambda s: s["metrics"]["samples_per_s"].update(value="fast"),
        "metrics.samples_per_s.value: expected a number, found 'fast'",
    ),
    "missing field": (lambda s: s.pop("complete"), "complete: required field is missing"),
    "wrong-typed threshold": (
        lambda s: s["thresholds"][0].update({"pass": "yes"}),
        "thresholds[0].pass: expected true or false, found 'yes'",
    ),
    "count as a boolean": (
        lambda s: s.update(ranks=True),
        "ranks: expected a whole number, found True",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SUMMARIES))
def test_a_malformed_summary_is_one_line_naming_the_file_and_the_field(
    case: str, tmp_path: Path
) -> None:
    run = copy_golden("collage", tmp_path / "run")
    change, expected = BAD_SUMMARIES[case]
    _edit(run / "summary.json", change)
    with pytest.raises(HarnessError) as caught:
        results.RunFolder.read(run)
    assert str(caught.value) == f"{run / 'summary.json'}: {expected}"


def test_a_manifest_of_another_format_version_or_with_a_wrong_field_is_refused(
    tmp_path: Path,
) -> None:
    run = copy_golden("collage", tmp_path / "run")
    manifest = run / "manifest.json"
    _edit(manifest, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(
        HarnessError,
        match=f"format version {FORMAT_VERSION + 1}, this harness reads version {FORMAT_VERSION}",
    ):
        results.read_manifest(manifest)
    _edit(manifest, lambda m: m.update(format_version=FORMAT_VERSION, repeat={"index": "one"}))
    with pytest.raises(HarnessError) as caught:
        results.read_manifest(manifest)
    assert str(caught.value) == (
        f"{manifest}: repeat.index: expected a whole number, found 'one' (and 1 more)"
    )


def _truncate(path: Path) -> None:
    path.write_text(path.read_text()[:200])


def _break_summary(case: str) -> Callable[[Path], str]:
    """Make the run folder's summary malformed; return what the one line must hold."""

    def breaker(run: Path) -> str:
        change, expected = BAD_SUMMARIES[case]
        _edit(run / "summary.json", change)
        return f"{run / 'summary.json'}: {expected}"

    return breaker


def _truncated_summary(run: Path) -> str:
    _truncate(run / "summary.json")
    return f"{run / 'summary.json'}: cannot read"


def _newer_manifest(run: Path) -> str:
    _edit(run / "manifest.json", lambda m: m.update(format_version=FORMAT_VERSION + 1))
    newer = f"format version {FORMAT_VERSION + 1}, this harness reads version {FORMAT_VERSION}"
    return f"{run / 'manifest.json'}: {newer}"


CLI_CASES: dict[str, Callable[[Path], str]] = {
    "truncated summary": _truncated_summary,
    "wrong-typed metric": _break_summary("wrong-typed metric"),
    "missing field": _break_summary("missing field"),
    "manifest of another format version": _newer_manifest,
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_report_and_compare_refuse_a_malformed_run_in_one_line(
    case: str, tmp_path: Path, cli
) -> None:
    good = copy_golden("collage", tmp_path / "good")
    bad = copy_golden("collage", tmp_path / "bad")
    expected = CLI_CASES[case](bad)
    for command in (("report", bad, "--out", tmp_path / "out"), ("compare", good, bad)):
        done = cli(*command)
        assert done.returncode == 2, (case, command[0], done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (case, command[0], lines)


# A metric of any shape but an object with a numeric value: each once raised StopIteration from
# compare and baseline save (exit 1, a regression to CI) or AttributeError from report and export.
MALFORMED_METRICS: dict[str, tuple[Any, str]] = {
    "bare number": (5.0, "metrics.samples_per_s: expected an object, found 5.0"),
    "string": ("fast", "metrics.samples_per_s: expected an object, found 'fast'"),
    "null": (None, "metrics.samples_per_s: expected an object, found None"),
    "list": ([1, 2], "metrics.samples_per_s: expected an object, found [1, 2]"),
    "string value": (
        {"value": "fast"},
        "metrics.samples_per_s.value: expected a number, found 'fast'",
    ),
}


@pytest.mark.parametrize("shape", sorted(MALFORMED_METRICS))
def test_every_reading_command_refuses_a_malformed_metric_in_one_line(
    shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    monkeypatch.setenv("HARNESS_BASELINES", str(tmp_path / "baselines"))
    good = copy_golden("collage", tmp_path / "good")
    bad = copy_golden("collage", tmp_path / "bad")
    value, expected = MALFORMED_METRICS[shape]
    _edit(bad / "summary.json", lambda s: s["metrics"].update(samples_per_s=value))
    commands = {
        "compare (current)": ("compare", good, bad),
        "compare (baseline)": ("compare", bad, good),
        "baseline save": ("baseline", "save", bad, "--name", "main"),
        "report": ("report", bad, "--out", tmp_path / "report"),
        "export --to dlio": ("export", bad, "--to", "dlio", "--target", tmp_path / "dlio"),
    }
    for name, command in commands.items():
        done = cli(*command)
        assert done.returncode == 2, (shape, name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (shape, name, lines)
        assert lines[0].startswith(f"error: {bad / 'summary.json'}: {expected}"), (shape, name)
    assert not list(tmp_path.glob("baselines/*/*.json"))  # nothing saved


def _sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk (a hole): what a damaged file system, or a
    hostile one, can hand a reader."""
    with open(path, "wb") as handle:
        handle.truncate(size)


def test_a_huge_json_file_is_refused_by_its_size_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    from harness.files import DATASET_JSON, RESULT_JSON, read_json

    huge = tmp_path / "huge.json"
    _sparse(huge, 2**31)  # 2 GiB: read whole, 4 GB of memory and seconds per command
    for kind in (RESULT_JSON, DATASET_JSON):
        with pytest.raises(HarnessError) as caught:
            read_json(huge, kind)
        assert str(caught.value) == (
            f"{huge}: 2,048 MiB, more than {kind.what} can be "
            f"({kind.max_bytes / 2**20:,.0f} MiB): not read"
        )
    good = copy_golden("collage", tmp_path / "good")
    bad = copy_golden("collage", tmp_path / "bad")
    _sparse(bad / "summary.json", 2**30)
    monkeypatch.setenv("HARNESS_BASELINES", str(tmp_path / "baselines"))
    commands = (
        ("compare", good, bad),
        ("compare", good, bad / "summary.json"),
        ("baseline", "save", bad, "--name", "main"),
        ("report", bad, "--out", tmp_path / "report"),
        ("export", bad, "--to", "dlio"),
    )
    for command in commands:
        done = cli(*command)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (command, done.stderr)
        assert "summary.json: 1,024 MiB, more than a results document can be" in lines[0]
