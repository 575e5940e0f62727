"""``harness capacity SCENARIO...``: how many emulated accelerators this storage and this client
feed, and what stops the next one.

The search itself is ``harness.capacity.orchestrate.search_capacity``; its options are the fields
of ``harness.scenario.CapacitySettings`` (defaults and bounds from there, validated by it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from harness.commands import override_arg, results_arg, utc_stamp
from harness.errors import HarnessError
from harness.files import STDOUT, ensure_writable_dir
from harness.scenario.capacity_settings import CapacitySettings, bounds_text

if TYPE_CHECKING:
    from harness.capacity.orchestrate import CapacityResult

HELP = "search the most emulated accelerators the storage keeps busy; name what limits it"

# The settings as options: (field, flag, metavar), in the order of --help.
OPTIONS = (
    ("profile", "--profile", "NAME"),
    ("min_busy", "--min-busy", "PCT"),
    ("min_busy_each", "--min-busy-each", "PCT"),
    ("max_accelerators", "--max-accelerators", "N"),
    ("probe_s", "--probe-s", "S"),
    ("repeat", "--repeat", "K"),
    ("ceiling_s", "--ceiling-s", "S"),
    ("server", "--server", "AxC"),
    ("ceiling_fio", "--ceiling-fio", ""),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="SCENARIO", help="scenario or suite files")
    override_arg(parser)
    for name, flag, metavar in OPTIONS:
        field = CapacitySettings.model_fields[name]
        if field.annotation is bool:  # a switch: off unless given
            parser.add_argument(flag, dest=name, action="store_true", help=field.description)
            continue
        bounds = bounds_text(name)
        shown = "none" if field.default is None else f"{field.default:g}"
        detail = f"default {shown}" + (f"; {bounds}" if bounds else "")
        parser.add_argument(
            flag,
            dest=name,
            type=int if field.annotation is int else float if field.annotation is float else str,
            default=field.default,
            metavar=metavar,
            help=f"{field.description} ({detail})".replace("%", "%%"),
        )
    results_arg(parser)
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE|-",
        help="where capacity.json goes (default: reports/<UTC time>-capacity/capacity.json); "
        "-: print it on stdout at the end (the progress lines go to stderr; the file is kept "
        "in the default place)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, metavar="DIR", help="also write the report there"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines of the runs")


def settings_from(args: argparse.Namespace) -> CapacitySettings:
    """The options as settings; a value out of bounds is refused in one line naming the flag."""
    try:
        return CapacitySettings(**{name: getattr(args, name) for name, _, _ in OPTIONS})
    except ValidationError as exc:
        flags = {name: flag for name, flag, _ in OPTIONS}
        error = exc.errors()[0]
        flag = flags.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else ""
        message = error["msg"][:1].lower() + error["msg"][1:]
        raise HarnessError(f"{flag}: {message} (got {error.get('input')!r})") from None


def run(args: argparse.Namespace) -> int:
    from harness.capacity.orchestrate import search_capacity

    settings = settings_from(args)
    # capacity.json is rewritten after every probe, so it always has a file; with `-` the file
    # stays in the default place and its final content goes to stdout as well
    to_stdout = args.json == STDOUT
    default = Path("reports") / f"{utc_stamp()}-capacity" / "capacity.json"
    out = default if args.json is None or to_stdout else Path(args.json)
    say = partial(print, file=sys.stderr) if to_stdout else print
    for folder in (out.parent, args.report):  # before the first probe, not after the search
        if folder is not None:
            ensure_writable_dir(folder)
    result = search_capacity(
        args.files,
        settings,
        out=out,
        results_dir=args.results,
        overrides=args.override,
        quiet=args.quiet,
        say=say,
    )
    if result.is_first_host:
        finish(result, args.report, say)
        if to_stdout:
            sys.stdout.write(out.read_text())
    return result.exit_code


def finish(result: CapacityResult, report: Path | None, say: Callable[[str], None]) -> None:
    """Say where capacity.json is; with ``report``, write the report of the search there."""
    say(f"capacity: {result.path}")
    if report is not None and result.run_folders:
        from harness.report import write_report

        html, pdf = write_report([*result.run_folders, result.path], report)
        say(f"report: {html}\nreport: {pdf}")
