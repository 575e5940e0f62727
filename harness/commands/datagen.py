"""``harness datagen FILE...``: generate each dataset, or index a bring-your-own folder."""

from __future__ import annotations

import argparse

from harness.commands import scenario_args
from harness.errors import ExitCode, HarnessError

HELP = "generate each scenario's dataset, or index a bring-your-own folder"


def configure(parser: argparse.ArgumentParser) -> None:
    scenario_args(parser)
    parser.add_argument(
        "--force", action="store_true", help="regenerate even where an up-to-date dataset exists"
    )
    parser.add_argument(
        "--client-ram",
        metavar="SIZE",
        help="RAM of each client that will read the data, for size: 5x-ram "
        "(e.g. 512GB or 1TiB; default: this machine's)",
    )
    parser.add_argument(
        "--hosts",
        type=int,
        default=1,
        metavar="N",
        help="clients that will read the data, for size: 5x-ram (default 1)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.data import prepare_datasets
    from harness.data.sizing import Clients, machine_ram, parse_bytes
    from harness.scenario import load_scenarios

    if args.hosts < 1:
        raise HarnessError(f"--hosts must be at least 1, got {args.hosts}")
    ram = parse_bytes(args.client_ram) if args.client_ram else machine_ram()
    loaded = load_scenarios(args.files, args.override)
    prepare_datasets(
        [item.scenario for item in loaded], force=args.force, clients=Clients(ram, args.hosts)
    )
    return ExitCode.OK
