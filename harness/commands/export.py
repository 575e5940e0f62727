"""``harness export RUN_OR_FOLDER... --to NAME``: runs to MLflow, ClearML, Prometheus or DLIO."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ExitCode

HELP = "export runs to MLflow, ClearML, a Prometheus textfile or a DLIO-shaped summary.json"
DESCRIPTION = (
    "Each RUN_OR_FOLDER is a run folder or a folder of runs. Text formats (prometheus, dlio) go "
    "to stdout without --target. Exporters are imported only when asked for: mlflow and clearml "
    "need `pip install 'harness[export]'`."
)
TARGETS = (
    "mlflow: a tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's default); "
    "clearml: a folder for the offline session (default: offline when $CLEARML_OFFLINE_MODE=1, "
    "else the clearml.conf server); prometheus: a *.prom file or a folder (written atomically); "
    "dlio: a file, or a folder of <scenario>/summary.json"
)


def export_args(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The options every export takes (``harness run --export`` names them with ``export-``)."""
    parser.add_argument(
        f"--{prefix}target", default=None, metavar="TARGET", help=f"where to: {TARGETS}"
    )
    parser.add_argument(
        f"--{prefix}experiment",
        default="harness",
        metavar="NAME",
        help="the MLflow experiment or ClearML project (default: harness)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    from harness.export import EXPORTERS

    parser.description = DESCRIPTION
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_OR_FOLDER")
    parser.add_argument("--to", required=True, choices=list(EXPORTERS), help="the exporter")
    export_args(parser)
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="a report folder (harness report / suite) whose report.html and report.pdf are "
        "attached (mlflow, clearml)",
    )
    parser.add_argument(
        "--force", action="store_true", help="export runs the target already has again"
    )


def run(args: argparse.Namespace) -> int:
    from harness.export import ExportOptions, export_runs

    options = ExportOptions(experiment=args.experiment, report=args.report, force=args.force)
    for line in export_runs(args.runs, args.to, args.target, options):
        print(line)
    return ExitCode.OK
