"""Errors the user can act on.

Anything raised as a ``HarnessError`` is printed by the CLI as one line per problem on stderr and
exits with code 2, never as a traceback. Everything else is a bug in the harness.

``ExitCode`` is the one table of exit codes; README's "Exit codes" lists the same (tested).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process exit status of every command means."""

    OK = 0  # done: every run complete, no regression, input valid
    FAILED = 1  # a run failed or is incomplete, a threshold missed (--strict), a regression
    BAD_INPUT = 2  # the input or environment was refused: one line per problem, nothing run
    INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C), what finished is kept: 128 + 2
    BROKEN_PIPE = 141  # stdout's reader has gone (| head): a quiet stop, as SIGPIPE's 128 + 13
    TERMINATED = 143  # stopped by SIGTERM, what finished is kept: 128 + 15

    @classmethod
    def for_signal(cls, name: str) -> ExitCode:
        """The code of a run stopped by the signal named ``name`` ("SIGINT", "SIGTERM")."""
        return cls.TERMINATED if name == "SIGTERM" else cls.INTERRUPTED


class HarnessError(Exception):
    """A problem with the user's input or environment, described in one line."""


class ScenarioError(HarnessError):
    """One or more problems found while loading scenario or suite files, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """An exception (or any message) as one line: whitespace collapsed, the type's name when the
    message is empty, cut to ``limit`` characters when given."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if limit is None else text[:limit]
