"""``harness export``: the golden runs (tests/data/golden) to Prometheus' text format, a
DLIO-shaped summary.json, an MLflow tracking store (a local sqlite:/// store: MLflow's file store
is deprecated) and ClearML (offline mode), each read back with that tool's own reader."""

from __future__ import annotations

import json
import os
import re
import statistics
import zipfile
from pathlib import Path

import pytest
from conftest import GOLDEN, copy_golden, run_harness

COLLAGE = GOLDEN / "collage"
INTERRUPTED = GOLDEN / "interrupted"


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_prometheus_textfile_parses_and_says_what_the_summary_says(cli, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    done = cli("export", COLLAGE, INTERRUPTED, "--to", "prometheus")
    assert done.returncode == 0, done.stderr
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}
    collage = _summary(COLLAGE)
    for name in ("samples_per_s", "busy_pct", "fetch_latency_p99_ms", "cpu_core_pct[1]"):
        base, _, index = name.partition("[")
        family = families[f"harness_{base}"]
        assert family.type == "gauge" and family.documentation
        (sample,) = [
            s
            for s in family.samples
            if s.labels["run_id"] == collage["run_id"]
            and s.labels.get("index", "") == index.rstrip("]")
        ]
        assert sample.value == pytest.approx(collage["metrics"][name]["value"])
        assert sample.labels["scenario"] == collage["scenario"]
    assert all(s.timestamp is None for f in families.values() for s in f.samples)
    legacy = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")  # format 0.0.4's metric and label names
    assert all(legacy.fullmatch(n) for n in families) and '{"' not in done.stdout
    assert all(legacy.fullmatch(k) for f in families.values() for s in f.samples for k in s.labels)
    complete = {s.labels["scenario"]: s.value for s in families["harness_run_complete"].samples}
    assert complete == {collage["scenario"]: 1.0, _summary(INTERRUPTED)["scenario"]: 0.0}
    interrupted = _summary(INTERRUPTED)

    not_measured = tmp_path / "not-measured"
    copy_golden("interrupted", not_measured)
    interrupted["metrics"]["busy_pct"]["value"] = None
    (not_measured / "summary.json").write_text(json.dumps(interrupted))
    done = cli("export", not_measured, "--to", "prometheus")
    assert "harness_busy_pct{" not in done.stdout  # not measured: left out, never 0
    assert "harness_samples_per_s{" in done.stdout

    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    written = cli("export", COLLAGE, "--to", "prometheus", "--target", textfiles)
    assert written.returncode == 0, written.stderr
    assert os.listdir(textfiles) == ["harness.prom"]  # atomically: no temporary file left
    assert "harness_samples_per_s{" in (textfiles / "harness.prom").read_text()
    refused = cli("export", COLLAGE, "--to", "prometheus", "--target", tmp_path / "x.txt")
    assert refused.returncode == 2 and "*.prom" in refused.stderr


def test_dlio_summary_has_dlio_key_names_and_mib(cli, tmp_path: Path) -> None:
    from harness import results
    from harness.dlio_metrics import run_dlio_block

    runs = tmp_path / "runs"
    runs.mkdir()
    blocks = []
    for index, au in enumerate((96.0, 80.0), start=1):
        run = copy_golden("collage", runs / f"r{index}")
        summary = _summary(run)
        summary["run_id"] += f"-r{index}"
        block = run_dlio_block(results.RunFolder.read(run))  # golden runs predate the block
        assert block is not None
        summary["dlio"] = block.model_dump(mode="json") | {"au_pct": au}
        blocks.append(summary["dlio"])
        (run / "summary.json").write_text(json.dumps(summary))
    done = cli("export", runs, "--to", "dlio")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    metric = document["metric"]
    assert metric["train_au_percentage"] == [96.0, 80.0]
    assert metric["train_au_mean_percentage"] == 88.0
    assert metric["train_au_stdev_percentage"] == pytest.approx(statistics.pstdev([96, 80]))
    # the golden scenario asks for busy >= 1 %: its threshold, not DLIO's 90 %, decides
    assert metric["train_au_meet_expectation"] == "success"
    rate, record = blocks[0]["train_throughput_samples_per_second"], blocks[0]["record_length"]
    assert metric["train_io_mean_MB_per_second"] == pytest.approx(rate * record / 2**20)
    assert metric["train_throughput_mean_samples_per_second"] == pytest.approx(rate)
    assert document["epochs"] == 2 and "MiB/s" in document["harness"]["MB_per_second_unit"]

    def no_threshold(run: Path) -> None:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["scenario"]["thresholds"]["min_busy_pct"] = None
        (run / "manifest.json").write_text(json.dumps(manifest))

    for run in runs.iterdir():
        no_threshold(run)
    target = tmp_path / "out" / "summary.json"
    done = cli("export", runs, "--to", "dlio", "--target", target)
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["metric"]["train_au_meet_expectation"] == "fail"  # < 90


def test_mlflow_run_per_harness_run_in_a_sqlite_store(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts under ./mlruns
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html>report</html>")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = cli(
        "export", COLLAGE, INTERRUPTED, "--to", "mlflow", "--target", uri, "--report", report
    )
    assert done.returncode == 0, done.stderr
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("harness")
    found = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    collage = _summary(COLLAGE)
    run = found[collage["run_id"]]
    assert run.info.status == "FINISHED"
    assert found[_summary(INTERRUPTED)["run_id"]].info.status == "KILLED"
    assert run.data.params["pipeline.batch_size"] == "4"
    assert run.data.metrics["samples_per_s"] == pytest.approx(
        collage["metrics"]["samples_per_s"]["value"]
    )
    assert run.data.metrics["cpu_core_pct.1"] == pytest.approx(
        collage["metrics"]["cpu_core_pct[1]"]["value"]
    )
    assert run.data.tags["harness.scenario"] == collage["scenario"]
    history = client.get_metric_history(run.info.run_id, "series/step_wait_s")
    import pandas as pd

    steps = pd.read_parquet(COLLAGE / "steps.parquet")
    assert [m.value for m in history] == pytest.approx(steps["wait_s"].tolist())
    stamps = [m.timestamp for m in history]
    assert stamps == sorted(stamps) and stamps[0] >= run.info.start_time
    assert run.info.start_time <= stamps[-1] <= run.info.end_time + 1000
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "manifest.json", "report"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == [
        "report/report.html"
    ]
    again = cli("export", COLLAGE, "--to", "mlflow", "--target", uri)
    assert again.returncode == 0 and "already exported" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_clearml_offline_session_holds_the_run(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export in a subprocess: ClearML's Task.init takes over its process (hooks, at-exit
    handlers, offline mode). Its configuration and cache live in a home of the test's own."""
    pytest.importorskip("clearml")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "home" / "cache"))
    sessions = tmp_path / "sessions"
    done = run_harness("export", str(COLLAGE), "--to", "clearml", "--target", str(sessions))
    assert done.returncode == 0, done.stderr
    collage = _summary(COLLAGE)
    (session,) = sessions.iterdir()
    assert session.name == f"{collage['run_id']}.zip"
    assert f"offline session {session}" in done.stdout
    with zipfile.ZipFile(session) as archive:
        names = archive.namelist()
        task = json.loads(archive.read("task.json"))
        events = [json.loads(line) for line in archive.read("metrics.jsonl").splitlines()]
    assert task["name"] == collage["run_id"] and collage["scenario"] in task["tags"]
    assert task["hyperparams"]["scenario"]["pipeline.batch_size"]["value"] == "4"
    reported = {e["variant"]: e["value"] for batch in events for e in batch if e["iter"] < 0}
    assert reported["samples_per_s"] == pytest.approx(collage["metrics"]["samples_per_s"]["value"])
    steps = [e for batch in events for e in batch if e["variant"] == "step_wait_s"]
    assert len(steps) == collage["metrics"]["steps"]["value"]  # the series, a point per step
    assert any(name.endswith("artifacts/summary.json/summary.json") for name in names)
    online = cli("export", COLLAGE, "--to", "clearml")  # no server configured: refused
    assert online.returncode == 2 and "clearml-init" in online.stderr


def test_export_refuses_bad_input_in_one_line(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, expected in (
        ((empty, "--to", "dlio"), "holds no run"),
        ((COLLAGE, "--to", "dlio", "--report", empty), "no report.html"),
    ):
        done = cli("export", *args)
        assert done.returncode == 2, done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
    unknown = cli("export", COLLAGE, "--to", "wandb")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_a_missing_package_stops_its_exporter_alone(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails
    monkeypatch.delitem(sys.modules, "harness.export.mlflow_exporter", raising=False)
    done = cli("export", COLLAGE, "--to", "mlflow")
    assert done.returncode == 2
    assert "exporter mlflow not available" in done.stderr and "harness[export]" in done.stderr
    spec = tmp_path / "never-read.yaml"  # refused before any scenario is read or run
    done = cli("run", spec, "--export", "mlflow")
    assert done.returncode == 2 and "exporter mlflow not available" in done.stderr
    assert cli("export", COLLAGE, "--to", "dlio").returncode == 0  # the others still work


def test_dlio_export_leaves_out_values_that_are_not_finite_and_says_so(cli, tmp_path: Path) -> None:
    from harness import results
    from harness.dlio_metrics import run_dlio_block

    runs = tmp_path / "runs"
    runs.mkdir()
    damaged = {
        "au_pct": float("nan"),
        "train_throughput_samples_per_second": float("inf"),
        "record_length": float("-inf"),
    }
    for index, changes in enumerate(({"au_pct": 80.0}, damaged), start=1):
        run = copy_golden("collage", runs / f"r{index}")
        summary = _summary(run)
        summary["run_id"] += f"-r{index}"
        block = run_dlio_block(results.RunFolder.read(run))
        assert block is not None
        summary["dlio"] = block.model_dump(mode="json") | changes
        summary["metrics"]["read_MBps"]["value"] = float("nan") if index == 2 else 1.0
        (run / "summary.json").write_text(json.dumps(summary))  # Python writes NaN, Infinity
    for target in (None, tmp_path / "dlio.json"):
        done = cli(
            "export", runs, "--to", "dlio", *(() if target is None else ("--target", target))
        )
        assert done.returncode == 0, done.stderr
        text = done.stdout if target is None else target.read_text()

        def refuse(constant: str) -> None:
            raise AssertionError(f"{constant} written: not JSON")

        document = json.loads(text, parse_constant=refuse)
        metric, harness = document["metric"], document["harness"]
        assert metric["train_au_percentage"] == [80.0]
        assert metric["train_au_mean_percentage"] == 80.0
        assert metric["train_au_stdev_percentage"] == 0.0
        assert len(metric["train_throughput_samples_per_second"]) == 1
        assert harness["record_length"][1] is None
        left_out = " | ".join(harness["left_out"])
        for name in ("au_pct is nan", "second is inf", "read_MBps is nan"):
            assert name in left_out, left_out
        assert len(harness["left_out"]) == 3
        warnings = done.stderr.strip().splitlines()
        assert len(warnings) == 3 and all(w.startswith("warning: ") for w in warnings)
