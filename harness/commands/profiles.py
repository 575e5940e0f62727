"""``harness profiles``: the shipped compute profiles, one per line, the bare name first."""

from __future__ import annotations

import argparse

from harness.errors import ExitCode

HELP = "list the shipped compute profiles for emulated accelerators"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="also say how each profile was obtained"
    )


def run(args: argparse.Namespace) -> int:
    from harness.train.profiles import shipped_profiles

    for profile in shipped_profiles():
        print(profile.summary_line())
        if args.verbose:
            print(f"    {profile.how}")
    return ExitCode.OK
