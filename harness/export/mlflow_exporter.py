"""Each harness run as an MLflow run (``harness export --to mlflow``).

In experiment ``--experiment`` (default ``harness``) of the tracking store ``--target`` (a
tracking URI such as ``sqlite:///mlflow.db`` or ``http://host:5000``; default: MLflow's own,
``$MLFLOW_TRACKING_URI``), one MLflow run per harness run, named by its run id and started at the
run's start time:

* params: the resolved scenario as dotted keys (``pipeline.workers``...);
* metrics: every measured summary metric (``gpu_util_pct[0]`` is logged as ``gpu_util_pct.0``:
  MLflow refuses brackets), not-measured ones left out;
* metric histories: the time series (batch wait, compute time, loss per step; read MB/s, CPU %,
  GPU util % per sample) with their wall-clock timestamps and the step or sample number as step;
* tags: scenario, harness run id, complete, hardware;
* artifacts: summary.json and manifest.json, and the report given with ``--report DIR``;
* status FINISHED for a complete run, KILLED for one stopped early.

A run already exported to the same experiment (tag ``harness.run_id``) is skipped unless
``--force``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from harness import results
from harness.errors import HarnessError
from harness.export import (
    ExportOptions,
    check_report,
    finished_epoch_s,
    flat_settings,
    headline_metrics,
    started_epoch_s,
    time_series,
)

TEXT = False
BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics per call
PARAM_MAX = 6000  # MLflow's limit on a param value's length


def mlflow_key(name: str) -> str:
    """A metric or param key MLflow accepts (letters, digits, ``_ - . space /``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", ".", name).strip(".")


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def export(runs: list[results.RunFolder], target: str | None, options: ExportOptions) -> list[str]:
    if target is not None:
        mlflow.set_tracking_uri(target)
    client = MlflowClient()
    try:
        experiment = client.get_experiment_by_name(options.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(options.experiment)
        )
    except mlflow.MlflowException as exc:
        raise HarnessError(f"mlflow {mlflow.get_tracking_uri()}: {exc.message}") from None
    lines = []
    for run in runs:
        done = client.search_runs(
            [experiment_id], filter_string=f"tags.`harness.run_id` = '{run.run_id}'"
        )
        if done and not options.force:
            lines.append(
                f"mlflow: {run.run_id}: already exported as run {done[0].info.run_id} "
                "(--force exports it again)"
            )
            continue
        mlflow_run = _export_run(client, experiment_id, run, options)
        lines.append(
            f"mlflow: {run.run_id} -> experiment {options.experiment}, run "
            f"{mlflow_run} ({mlflow.get_tracking_uri()})"
        )
    return lines


def _export_run(
    client: MlflowClient, experiment_id: str, run: results.RunFolder, options: ExportOptions
) -> str:
    started = started_epoch_s(run)
    start_ms = None if started is None else int(started * 1000)
    hardware = run.hardware_table
    tags = {
        "harness.run_id": run.run_id,
        "harness.scenario": run.scenario_name,
        "harness.complete": str(run.complete).lower(),
        "harness.host": str(hardware.get("hostname", "")),
        "harness.cpu_model": str(hardware.get("cpu_model", "")),
        "harness.gpus": str(hardware.get("gpus", "")),
        "harness.storage": f"{hardware.get('storage_fs_type', '')} "
        f"{hardware.get('storage_source', '')}".strip(),
    }
    if run.reason:
        tags["harness.reason"] = run.reason
    created = client.create_run(
        experiment_id, start_time=start_ms, tags=tags, run_name=run.run_id
    ).info.run_id
    end = finished_epoch_s(run)
    end_ms = None if end is None else int(end * 1000)
    params = [Param(mlflow_key(k), v[:PARAM_MAX]) for k, v in flat_settings(run).items()]
    metrics = [
        Metric(mlflow_key(name), value, end_ms or start_ms or 0, 0)
        for name, (value, _unit, _direction) in headline_metrics(run).items()
    ]
    for series in time_series(run):
        key = f"series/{mlflow_key(series.name)}"
        metrics += [
            Metric(key, value, int((started or 0) * 1000 + t * 1000), step)
            for step, (t, value) in enumerate(zip(series.t, series.values, strict=True))
        ]
    for chunk in _chunks(params, 100):
        client.log_batch(created, params=list(chunk))
    for chunk in _chunks(metrics, BATCH):
        client.log_batch(created, metrics=list(chunk))
    client.log_batch(created, tags=[RunTag("harness.exporter", "harness export --to mlflow")])
    for document in (results.SUMMARY.file, results.MANIFEST.file):
        if (run.folder / document).exists():
            client.log_artifact(created, str(run.folder / document))
    if options.report is not None:
        for path in check_report(options.report):
            client.log_artifact(created, str(path), artifact_path="report")
    client.set_terminated(
        created,
        status=RunStatus.to_string(RunStatus.FINISHED if run.complete else RunStatus.KILLED),
        end_time=end_ms,
    )
    return created
