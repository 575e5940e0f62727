"""``harness cache FILE...``: decode the videos of cached scenarios into the frame cache."""

from __future__ import annotations

import argparse

from harness.commands import scenario_args
from harness.errors import ExitCode

HELP = "decode videos once into the frame cache"


def configure(parser: argparse.ArgumentParser) -> None:
    scenario_args(parser)
    parser.add_argument(
        "--force", action="store_true", help="rebuild even where a complete cache exists"
    )


def run(args: argparse.Namespace) -> int:
    from harness.data.cache import build_caches
    from harness.scenario import load_scenarios

    loaded = load_scenarios(args.files, args.override)
    build_caches([item.scenario for item in loaded], force=args.force)
    return ExitCode.OK
