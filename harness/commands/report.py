"""``harness report RUN_OR_FOLDER...``: report.html and report.pdf from run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ExitCode

HELP = "write report.html and report.pdf from run folders, folders of runs and capacity.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_OR_FOLDER")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="where report.html and report.pdf are written (default: ./reports)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.report import write_report

    html, pdf = write_report(args.runs, args.out)
    print(f"report: {html}\nreport: {pdf}")
    return ExitCode.OK
