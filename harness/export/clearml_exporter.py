"""Each harness run as a ClearML task (``harness export --to clearml``): the seed study's
experiment manager (allegro.ai) is today's ClearML.

A task per run, in project ``--experiment`` (default ``harness``), named by the run id and tagged
with the scenario (and ``incomplete`` for a run stopped early), holding what the MLflow exporter
sends: the resolved scenario as the task's ``scenario`` parameters, every measured summary
metric as a single value, the time series as scalars (one plot per series; the iteration is the
step or sample number, since ClearML scalars carry no time of their own), and summary.json,
manifest.json and the ``--report`` files as artifacts.

With ``--target DIR`` (or ``CLEARML_OFFLINE_MODE=1``) ClearML runs offline: each task is kept as
an offline session zip, copied into DIR, to be imported later with
``clearml-task --import-offline-session FILE`` (or ``Task.import_offline_session``). Without it
the tasks go to the server of clearml.conf (``clearml-init``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clearml import Task

from harness import results
from harness.errors import HarnessError
from harness.export import (
    ExportOptions,
    check_report,
    flat_settings,
    headline_metrics,
    time_series,
)

TEXT = False
# Task.init hooks into frameworks and scans the script's repository in a thread (tens of seconds
# on a busy machine); an export needs none of it.
NO_AUTO_CONNECT = dict.fromkeys(
    (
        "matplotlib",
        "tensorflow",
        "tensorboard",
        "pytorch",
        "xgboost",
        "scikit",
        "fastai",
        "lightgbm",
        "hydra",
        "detect_repository",
        "tfdefines",
        "joblib",
        "megengine",
        "catboost",
        "gradio",
        "jsonargparse",
    ),
    False,
)


def export(runs: list[results.RunFolder], target: str | None, options: ExportOptions) -> list[str]:
    # ClearML reports from a forked subprocess by default on Linux (its configuration's
    # sdk.development.report_use_subprocess); closing a task then polls it for seconds. An export
    # is a short command that reports everything at once: report from this process. (ClearML
    # types the flag by its lazily read default, a LazyEvalWrapper; what it reads is a bool.)
    Task._report_subprocess_enabled = False  # type: ignore[assignment]
    offline_dir = None if target is None else Path(target)
    if offline_dir is None and not Task.is_offline() and not _server_configured():
        raise HarnessError(
            "clearml: no server configured (no clearml.conf, no CLEARML_API_* variables): run "
            "`clearml-init`, or give --target DIR for an offline session"
        )
    if offline_dir is not None:
        try:
            offline_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"--target {target}: cannot create: {exc.strerror}") from None
        Task.set_offline(True)  # for the rest of this process: a harness command is one export
    return [_export_and_say(run, options, offline_dir) for run in runs]


def _export_and_say(
    run: results.RunFolder, options: ExportOptions, offline_dir: Path | None
) -> str:
    """Export one run; the line that says where it went."""
    try:
        task = _export_run(run, options)
    except Exception as exc:  # ClearML raises its own types for a missing server or config
        raise HarnessError(f"clearml: {run.run_id}: {type(exc).__name__}: {exc}") from None
    if Task.is_offline():
        session = Path(f"{task.get_offline_mode_folder()}.zip")
        if offline_dir is not None and session.exists():
            session = Path(shutil.copy2(session, offline_dir / f"{run.run_id}.zip"))
        return f"clearml: {run.run_id} -> offline session {session}"
    page = task.get_output_log_web_page()
    return f"clearml: {run.run_id} -> task {task.id} ({page})"


def _server_configured() -> bool:
    """Whether ClearML has a server to talk to: its configuration file or variables."""
    names = ("CLEARML_CONFIG_FILE", "CLEARML_API_HOST", "CLEARML_API_ACCESS_KEY")
    return any(os.environ.get(name) for name in names) or (Path.home() / "clearml.conf").exists()


def _export_run(run: results.RunFolder, options: ExportOptions) -> Task:
    tags = [run.scenario_name] + ([] if run.complete else ["incomplete"])
    task: Task = Task.init(  # its hint returns a type variable that no argument binds
        project_name=options.experiment,
        task_name=run.run_id,
        task_type=Task.TaskTypes.testing,
        tags=tags,
        reuse_last_task_id=False,
        auto_connect_frameworks=NO_AUTO_CONNECT,
        auto_resource_monitoring=False,
        auto_connect_arg_parser=False,
        auto_connect_streams=False,
    )
    try:
        task.connect(flat_settings(run), name="scenario")
        hardware = run.hardware_table
        task.connect({k: str(v) for k, v in hardware.items()}, name="hardware")
        logger = task.get_logger()
        for name, (value, _unit, _direction) in headline_metrics(run).items():
            logger.report_single_value(name, value)
        for series in time_series(run):
            title = f"{series.name} ({series.unit})" if series.unit else series.name
            for step, value in enumerate(series.values):
                logger.report_scalar(title, series.name, value=value, iteration=step)
        for document in (results.SUMMARY.file, results.MANIFEST.file):
            if (run.folder / document).exists():
                task.upload_artifact(
                    document, artifact_object=str(run.folder / document), wait_on_upload=True
                )
        if options.report is not None:
            for path in check_report(options.report):
                task.upload_artifact(path.name, artifact_object=str(path), wait_on_upload=True)
        if not run.complete:
            task.mark_stopped(force=True, status_message=run.reason or "stopped early")
    finally:
        task.close()
    return task
