"""``harness selfcheck [--gpu]``: every scenario of a plan with every backend, one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import override_arg, results_arg, utc_stamp
from harness.errors import HarnessError

HELP = "generate a small dataset and run every scenario with every backend; print a table"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU plan (1080p video, U-Net 64, bf16; ~4 min on one GPU); refused without one",
    )
    parser.add_argument(
        "--plan", type=Path, default=None, metavar="FILE", help="a self-check plan YAML instead"
    )
    override_arg(parser)
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="measured seconds per run (default: each scenario's own)",
    )
    results_arg(parser)
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the table and report go (default: reports/<UTC time>-selfcheck)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from harness.selfcheck import run_selfcheck

    if args.duration is not None and args.duration <= 0:
        raise HarnessError(f"--duration {args.duration}: expected seconds above 0")
    return run_selfcheck(
        gpu=args.gpu,
        plan_file=args.plan,
        overrides=args.override,
        duration_s=args.duration,
        results_root=args.results,
        report_dir=args.report or Path("reports") / f"{utc_stamp()}-selfcheck",
        quiet=args.quiet,
    )
