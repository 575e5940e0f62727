"""``harness compare BASELINE CURRENT``: direction- and noise-aware verdicts; exit 1 on a
regression."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import json_output_arg

HELP = "judge CURRENT against BASELINE, metric by metric; exit 1 on a regression"
DESCRIPTION = (
    "BASELINE and CURRENT are each a run folder, a folder of runs (repeats, or a suite's results: "
    "grouped by scenario), a summary.json, or a saved baseline's name."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("baseline", metavar="BASELINE")
    parser.add_argument("current", metavar="CURRENT")
    json_output_arg(parser, "the comparison")
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write the verdicts as JUnit XML (a test suite per scenario, a test case per "
        "metric) for CI test reports; $GITHUB_STEP_SUMMARY, when set, gets a Markdown table",
    )
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=PCT",
        help="a metric's tolerance in %% of the baseline, e.g. samples_per_s=5 (repeatable; "
        "overrides the scenario's thresholds.tolerance_pct and the defaults)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        metavar="A",
        help="significance level of the Mann-Whitney U test on repeats (default 0.05)",
    )
    parser.add_argument(
        "--allow-hardware-mismatch",
        action="store_true",
        help="compare runs from different hardware (refused by default)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.compare.commands import compare_command, parse_tolerances

    return compare_command(
        args.baseline,
        args.current,
        json_output=args.json,
        tolerances=parse_tolerances(args.tolerance),
        allow_hardware_mismatch=args.allow_hardware_mismatch,
        alpha=args.alpha,
        junit=args.junit,
    )
