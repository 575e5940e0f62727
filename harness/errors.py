"""Errors the user can act on.

Anything raised as a ``HarnessError`` is printed by the CLI as one line per problem on stderr and
exits with code 2, never as a traceback. Everything else is a bug in the harness.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2


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
