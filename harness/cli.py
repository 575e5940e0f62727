"""Command-line interface: parse and dispatch; each command lives in ``harness.commands``.

Every command that takes a scenario also takes a suite file and ``-o key.path=value`` overrides.
A ``HarnessError`` becomes one line per problem on stderr and exit code 2; a closed stdout (the
reader of a pipe gone) ends the command quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from harness import __version__
from harness.commands import COMMANDS, command_module
from harness.errors import ExitCode, HarnessError, ScenarioError
from harness.text import visible


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Benchmark and validate storage-to-GPU throughput with real training loops.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = command_module(name)
        command = commands.add_parser(name, help=module.HELP)
        module.configure(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "index_dir", None) is not None:
        # An environment variable, so that the processes a run launches (emulated accelerators,
        # capacity probes, torchrun ranks) find the same indexes.
        from harness.data.index import INDEX_DIR_ENV

        os.environ[INDEX_DIR_ENV] = str(args.index_dir.absolute())
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # here, where a reader that has gone is caught, not at exit
        return code
    except BrokenPipeError:
        # The reader of stdout has gone (`harness run X | head -1`): what was written is kept;
        # stop quietly, as a tool killed by SIGPIPE would (no traceback at exit either).
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    except ScenarioError as exc:
        for line in exc.problems:  # each may quote the user's text: shown, never acted on
            print(visible(line), file=sys.stderr)
        return ExitCode.BAD_INPUT
    except HarnessError as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print(
            "interrupted: finished files are kept; run the same command again to resume",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit cannot fail on
    the closed pipe again (the recipe of Python's documentation, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file behind stdout (captured in a test)
        pass
    finally:
        os.close(devnull)
