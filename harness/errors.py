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
