"""``harness datagen FILE...``: generate each dataset, or index a bring-your-own folder."""

from __future__ import annotations

import argparse

from harness.commands import scenario_args

HELP = "generate each scenario's dataset, or index a bring-your-own folder"


def configure(parser: argparse.ArgumentParser) -> None:
    scenario_args(parser)
    parser.add_argument(
        "--force", action="store_true", help="regenerate even where an up-to-date dataset exists"
    )


def run(args: argparse.Namespace) -> int:
    from harness.data import prepare_datasets
    from harness.scenario import load_scenarios

    loaded = load_scenarios(args.files, args.override)
    prepare_datasets([item.scenario for item in loaded], force=args.force)
    return 0
