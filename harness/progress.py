"""Progress shown to a person: the one mechanism (tqdm) behind every long task.

On a terminal, tqdm rewrites one line in place. In a log (stderr is not a terminal: CI, a file,
a pipe) nothing is rewritten, so that a log holds a few whole lines rather than a flood of
carriage returns: a counted bar stays silent and a status line is printed as a whole line at
most every ``log_every_s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def interactive(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stderr by default) is a terminal a line can be rewritten on."""
    stream = stream if stream is not None else sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def bar(
    iterable: Iterable[Item] | None = None,
    *,
    total: int | None = None,
    description: str,
    unit: str,
    enabled: bool = True,
) -> tqdm[Item]:
    """A counted bar on stderr, cleared when done; silent in a log or when not ``enabled``."""
    return tqdm(
        iterable,
        total=total,
        desc=description,
        unit=unit,
        leave=False,
        disable=not (enabled and interactive()),
    )


class StatusLine:
    """A line of text that says where a long task is: rewritten at most every ``every_s`` on a
    terminal, printed whole at most every ``log_every_s`` in a log.

    ``first_at_once``: show the first line as soon as it is given (else only after an interval).
    ``keep``: leave the last line on the terminal when closed (else clear it).
    """

    def __init__(
        self,
        *,
        every_s: float = 1.0,
        log_every_s: float = 10.0,
        first_at_once: bool = True,
        keep: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = interactive(self.stream)
        self.interval_s = every_s if self.interactive else log_every_s
        self._last = float("-inf") if first_at_once else time.monotonic()
        self._keep = keep
        self._terminal_line: tqdm[None] | None = None

    def due(self) -> bool:
        """Whether a line given now would be shown (so that callers skip composing it)."""
        return time.monotonic() - self._last >= self.interval_s

    def update(self, text: str) -> None:
        """Show ``text`` if it is due."""
        if self.due():
            self.show(text)

    def show(self, text: str) -> None:
        """Show ``text`` now."""
        self._last = time.monotonic()
        if not self.interactive:
            print(text, file=self.stream, flush=True)
            return
        if self._terminal_line is None:  # tqdm writes it, cut to the terminal's width
            self._terminal_line = tqdm(
                file=self.stream, bar_format="{desc}", leave=self._keep, dynamic_ncols=True
            )
        self._terminal_line.set_description_str(text)

    def close(self) -> None:
        if self._terminal_line is not None:
            self._terminal_line.close()
            self._terminal_line = None
