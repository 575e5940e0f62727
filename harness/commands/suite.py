"""``harness suite SUITE``: prepare a suite's data (datagen, cache), run it, write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import run as run_command

HELP = "prepare the data of a suite (datagen, cache), then run all its scenarios"


def configure(parser: argparse.ArgumentParser) -> None:
    run_command.configure(parser)
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the suite's report.html and report.pdf go "
        "(default: reports/<UTC time>-<suite>)",
    )


def run(args: argparse.Namespace) -> int:
    report = args.report or run_command.default_report_dir(args.files)
    return run_command.run_scenarios(args, report=report)
