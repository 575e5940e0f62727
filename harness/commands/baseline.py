"""``harness baseline save RUN --name NAME`` and ``harness baseline list``."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "save runs as a named baseline for this hardware, or list baselines"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save", help="keep RUN (a run folder or a folder of runs) as baseline NAME"
    )
    save.add_argument("run", type=Path, metavar="RUN")
    save.add_argument("--name", required=True, metavar="NAME")
    actions.add_parser("list", help="list saved baselines (./baselines or $HARNESS_BASELINES)")


def run(args: argparse.Namespace) -> int:
    from harness.compare.commands import baseline_list_command, baseline_save_command

    if args.baseline_command == "save":
        return baseline_save_command(args.run, args.name)
    return baseline_list_command()
