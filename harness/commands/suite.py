"""``harness suite SUITE``: prepare a suite's data (datagen, cache), run it, write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import capacity as capacity_command
from harness.commands import run as run_command
from harness.errors import HarnessError
from harness.files import ensure_writable_dir
from harness.scenario import CapacitySettings

HELP = (
    "prepare the data of a suite (datagen, cache), then run all its scenarios (or search their "
    "capacity, with the suite's capacity key)"
)


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
    from harness.scenario import is_suite, load_suite

    report = args.report or run_command.default_report_dir(args.files)
    suites = [load_suite(file)[0] for file in args.files if is_suite(file)]
    ensure_writable_dir(report)  # before any scenario runs, not after the last
    searches = [suite.capacity for suite in suites if suite.capacity is not None]
    if not searches:
        return run_command.run_scenarios(args, report=report)
    if len(args.files) != 1:
        raise HarnessError("a suite with a capacity key runs alone: give one suite file")
    if args.export:
        raise HarnessError(
            "--export: a capacity search is not exported; export its probes' run folders with "
            "`harness export`"
        )
    return _capacity(args, searches[0], report)


def _capacity(args: argparse.Namespace, settings: CapacitySettings, report: Path) -> int:
    """The suite's capacity search: its data prepared, then a search of each of its scenarios
    with the suite's settings, capacity.json and the report in ``report``."""
    from harness.capacity.orchestrate import search_capacity
    from harness.data import prepare_datasets
    from harness.data.cache import build_caches
    from harness.scenario import load_scenarios

    if args.repeat != 1 or args.strict:
        raise HarnessError("--repeat and --strict apply to fixed runs, not to a capacity suite")
    scenarios = [item.scenario for item in load_scenarios(args.files, args.override)]
    prepare_datasets(scenarios)
    build_caches(scenarios)
    result = search_capacity(
        args.files,
        settings,
        out=report / "capacity.json",
        results_dir=args.results,
        overrides=args.override,
        quiet=args.quiet,
    )
    if result.is_first_host:
        capacity_command.finish(result, report, print)
    return result.exit_code
