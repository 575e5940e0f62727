"""CLI commands, one module each, found by name and imported when the parser is built.

A command module defines ``HELP`` (one line for ``harness --help``), ``configure(parser)`` (its
arguments) and ``run(args) -> int`` (the exit code). Modules import their heavy dependencies
inside ``run``, so ``harness --help`` and a command that needs no optional package never pay for
(or break on) the others. A new command is one module plus its name in ``harness.registry``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

from harness import registry
from harness.registry import Command

# The commands' registry (harness.registry.COMMANDS), in the order ``harness --help`` lists them.
COMMANDS = registry.COMMANDS.names


def command_module(name: str) -> Command:
    return cast(Command, registry.COMMANDS.load(name))


def scenario_args(parser: argparse.ArgumentParser) -> None:
    """Scenario or suite files, and ``-o`` overrides."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario or suite YAML files")
    override_arg(parser)


def override_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="set a field of every scenario, e.g. -o pipeline.workers=4 (repeatable)",
    )
    parser.add_argument(
        "--index-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where indexes of bring-your-own datasets are kept (default: ./.harness/index, or "
        "$HARNESS_INDEX_DIR); the datasets themselves are only read",
    )


def json_output_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json FILE|-``, the same in every command with a JSON output: ``what`` goes to FILE
    (written atomically) or, with ``-``, to stdout instead of the text output."""
    parser.add_argument(
        "--json",
        metavar="FILE|-",
        default=None,
        help=f"write {what} as JSON to FILE, or to stdout with - (instead of the text output)",
    )


def results_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="where run folders are written (default: ./results)",
    )


def utc_stamp() -> str:
    """A time stamp for default report folder names (sorts by time)."""
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
