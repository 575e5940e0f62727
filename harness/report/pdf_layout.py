"""The PDF's page geometry and the measuring of text and tables on it, before anything is drawn.

Pure arithmetic on strings and inches (no matplotlib): how many lines a text wraps to, how wide
each column of a table is, which columns go together on a page when a table is too wide (the key
columns repeat on each part), and how much room a table asks for before it starts.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

from harness.report.content import Table

PAGE_W, PAGE_H = 11.69, 8.27  # A4 landscape, inches
MARGIN = 0.5
CONTENT_W = PAGE_W - 2 * MARGIN
TOP = PAGE_H - 0.62  # first line of content
BOTTOM = 0.55  # content stops here; the footer sits below
POINT = 1 / 72
EM = 0.6  # DejaVu Sans average glyph width, in em: for estimating text widths
EM_BOLD = 0.68
BODY_PT = 7.5
PAD = 0.05
MIN_VALUE_COLUMN_IN = 1.25
SHORT_TABLE_ROWS = 10  # a table of this many rows or fewer is never split across pages
LEAST_ROWS = 6  # a longer table starts on a page only where this many of its rows fit


def char_width(points: float, bold: bool = False) -> float:
    """An average character's width in inches (an estimate: the text is not measured)."""
    return points * (EM_BOLD if bold else EM) * POINT


def line_height(points: float) -> float:
    """The distance between two lines of text in inches."""
    return points * 1.32 * POINT


def wrap_text(text: str, width_in: float, points: float, bold: bool = False) -> list[str]:
    """The lines ``text`` takes in a column ``width_in`` inches wide; its own line breaks kept."""
    chars = max(4, int(width_in / char_width(points, bold)))
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        lines.extend(textwrap.wrap(paragraph, chars, break_long_words=True) or [""])
    return lines


@dataclass
class TableLayout:
    """Column widths, wrapped cells and row heights of one column part of a table."""

    widths: list[float]
    header: list[list[str]]
    body: list[list[list[str]]]
    header_h: float
    heights: list[float]

    @classmethod
    def of(cls, table: Table, columns: list[int]) -> TableLayout:
        widths = _column_widths(table, columns)
        pairs = list(zip(columns, widths, strict=True))
        header = [wrap_text(table.columns[c], w - 2 * PAD, BODY_PT, True) for c, w in pairs]
        body = [
            [wrap_text(row[c], w - 2 * PAD, BODY_PT, c < table.key_columns) for c, w in pairs]
            for row in table.rows
        ]
        line = line_height(BODY_PT)
        header_h = max(len(cell) for cell in header) * line + 2 * PAD
        heights = [max(len(cell) for cell in cells) * line + 2 * PAD for cells in body]
        return cls(widths, header, body, header_h, heights)

    @property
    def first_need(self) -> float:
        """Room to ask for before drawing: a short table whole (it is never split), a longer
        one its header and :data:`LEAST_ROWS` rows or 40 % of its rows, whichever is more (it
        continues on the next page, its header repeated)."""
        rows = len(self.heights)
        if rows <= SHORT_TABLE_ROWS:
            return 0.3 + self.header_h + sum(self.heights)
        first = max(LEAST_ROWS, math.ceil(0.4 * rows))
        return min(0.3 + self.header_h + sum(self.heights[:first]), TOP - BOTTOM)


def _natural_widths(table: Table, columns: list[int]) -> list[float]:
    """Each column's width with no wrapping (capped at 80 characters); bold where drawn bold."""
    out = []
    for c in columns:
        bold = c < table.key_columns
        widths = [len(table.columns[c]) * char_width(BODY_PT, True)]
        widths += [
            max((len(line) for line in str(row[c]).split("\n")), default=0)
            * char_width(BODY_PT, bold)
            for row in table.rows
        ]
        out.append(min(max(widths), 80 * char_width(BODY_PT, bold)) + 2 * PAD + 0.02)
    return out


def column_parts(table: Table) -> list[list[int]]:
    """Column groups that fit the page: the key columns, then as many value columns as fit."""
    count = len(table.columns)
    if not table.split_columns:
        return [list(range(count))]
    keys = list(range(min(table.key_columns, count)))
    values = list(range(len(keys), count))
    if sum(_natural_widths(table, list(range(count)))) <= CONTENT_W or not values:
        return [list(range(count))]
    key_w = min(sum(_natural_widths(table, keys)), CONTENT_W * 0.45)
    per_part = max(1, int((CONTENT_W - key_w) // MIN_VALUE_COLUMN_IN))
    if per_part >= len(values):
        return [list(range(count))]
    return [keys + values[i : i + per_part] for i in range(0, len(values), per_part)]


def _column_widths(table: Table, columns: list[int]) -> list[float]:
    """Natural widths, then the widest columns narrowed (their text wraps) until all fit."""
    widths = _natural_widths(table, columns)
    total = sum(widths)
    if total <= CONTENT_W:
        spare = CONTENT_W - total
        if len(columns) > 3:  # spread wide tables over the page; keep narrow ones compact
            widths = [w + spare * w / total for w in widths]
        return widths
    cap = max(widths)
    while sum(min(w, cap) for w in widths) > CONTENT_W and cap > 0.5:
        cap -= 0.05
    return [min(w, cap) for w in widths]
