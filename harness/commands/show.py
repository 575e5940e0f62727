"""``harness show FILE...``: the resolved scenarios, defaults filled in."""

from __future__ import annotations

import argparse

from harness.commands import scenario_args
from harness.errors import ExitCode

HELP = "print the resolved scenario (defaults filled in)"


def configure(parser: argparse.ArgumentParser) -> None:
    scenario_args(parser)


def run(args: argparse.Namespace) -> int:
    from harness import scenario as scenarios

    for index, item in enumerate(scenarios.load_scenarios(args.files, args.override)):
        if index:
            print("---")
        print(f"# {item.file}")
        print(scenarios.scenario_to_yaml(item.scenario), end="")
    return ExitCode.OK
