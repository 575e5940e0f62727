"""The PDF report: the same document as the HTML, laid out on A4 landscape pages by matplotlib.

Only PyPI packages are needed (matplotlib's PdfPages; no browser, no LaTeX): text and tables are
drawn as text on page-sized figures, and each chart is the very figure the HTML shows, resized to
the page with a page header, its section heading and its caption. Fonts are embedded as TrueType
so that the text can be searched and extracted.

Tables too wide for a page are split by columns (the key columns repeat on each part) and tables
too long continue on the next page with their header row repeated.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from harness.report.charts import INK, MUTED, STYLE
from harness.report.document import Chart, Document, Note, Section, Table

PAGE_W, PAGE_H = 11.69, 8.27  # A4 landscape, inches
MARGIN = 0.5
CONTENT_W = PAGE_W - 2 * MARGIN
HEADER_Y = PAGE_H - 0.32  # running header baseline
TOP = PAGE_H - 0.62  # first line of content
BOTTOM = 0.55  # content stops here; the footer sits below
POINT = 1 / 72
EM = 0.6  # DejaVu Sans average glyph width, in em: for estimating text widths
EM_BOLD = 0.68
BODY_PT = 7.5
PAD = 0.05
MIN_VALUE_COLUMN_IN = 1.25
CELL_COLOURS = {"pass": ("#e6f4ea", "#17803d"), "fail": ("#fce8e6", "#b3261e")}
NOTE_COLOURS = {
    "error": ("#fce8e6", "#b3261e"),
    "warning": ("#fff7e0", "#e0a100"),
    "info": ("#eaf2fb", "#0b5cab"),
}


def _char_w(points: float, bold: bool = False) -> float:
    return points * (EM_BOLD if bold else EM) * POINT


def _line_h(points: float) -> float:
    return points * 1.32 * POINT


def _wrap(text: str, width_in: float, points: float, bold: bool = False) -> list[str]:
    chars = max(4, int(width_in / _char_w(points, bold)))
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        lines.extend(textwrap.wrap(paragraph, chars, break_long_words=True) or [""])
    return lines


def _escape(text: str) -> str:
    """Text for matplotlib: a ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


@dataclass
class _Cursor:
    figure: Figure
    y: float  # inches from the page bottom


class _Writer:
    """Pages in order: a text page flows until full; a chart takes a page of its own."""

    def __init__(self, pdf: PdfPages, document: Document) -> None:
        self.pdf = pdf
        self.document = document
        self.page = 0
        self.cursor: _Cursor | None = None
        self.section: Section | None = None

    # --- pages ----------------------------------------------------------------------------------

    def _frame(self, figure: Figure) -> None:
        """Running header and footer of every page."""
        self.page += 1
        doc = self.document
        figure.text(
            MARGIN / PAGE_W,
            HEADER_Y / PAGE_H,
            _escape(f"{doc.title} · {doc.subtitle}"),
            fontsize=8,
            color=MUTED,
        )
        if self.section is not None:
            figure.text(
                1 - MARGIN / PAGE_W,
                HEADER_Y / PAGE_H,
                _escape(f"{self.section.number}  {self.section.title}"),
                fontsize=8,
                color=MUTED,
                ha="right",
            )
        figure.add_artist(
            Rectangle(
                (MARGIN / PAGE_W, (HEADER_Y - 0.08) / PAGE_H),
                CONTENT_W / PAGE_W,
                0.6 / 72 / PAGE_H,
                transform=figure.transFigure,
                color="#cccccc",
            )
        )
        figure.text(
            MARGIN / PAGE_W,
            0.3 / PAGE_H,
            f"generated {doc.generated} by harness {doc.harness_version} · "
            "MB = 10^6 bytes, MiB = 2^20 bytes",
            fontsize=7,
            color=MUTED,
        )
        figure.text(
            1 - MARGIN / PAGE_W,
            0.3 / PAGE_H,
            f"page {self.page}",
            fontsize=7,
            color=MUTED,
            ha="right",
        )

    def _new_text_page(self) -> _Cursor:
        self.flush()
        figure = Figure(figsize=(PAGE_W, PAGE_H))
        self._frame(figure)
        self.cursor = _Cursor(figure, TOP)
        return self.cursor

    def flush(self) -> None:
        if self.cursor is not None:
            self.pdf.savefig(self.cursor.figure)
            self.cursor = None

    def _room(self, height: float) -> _Cursor:
        """The current text page if ``height`` inches still fit on it, else a new one."""
        if self.cursor is None or self.cursor.y - height < BOTTOM:
            return self._new_text_page()
        return self.cursor

    def _text(self, cursor: _Cursor, x: float, y: float, text: str, **kwargs) -> None:
        cursor.figure.text(x / PAGE_W, y / PAGE_H, _escape(text), va="top", **kwargs)

    # --- blocks ---------------------------------------------------------------------------------

    def title_block(self) -> None:
        doc = self.document
        cursor = self._new_text_page()
        self._text(cursor, MARGIN, cursor.y, doc.title, fontsize=22, weight="bold", color=INK)
        self._text(cursor, MARGIN, cursor.y - 0.45, doc.subtitle, fontsize=13, color=MUTED)
        cursor.y -= 0.8
        self.paragraph(
            "Reference: the WP-7300 validation study (its Figure 7: 97.3 % average GPU "
            "utilisation training from the frame cache vs 58.1 % decoding during training). "
            "Sections: " + "; ".join(f"{s.number} {s.title}" for s in doc.sections) + ".",
            8.5,
            MUTED,
        )
        cursor.y -= 0.1
        for note in doc.notes:
            self.note(note)

    def heading(self, section: Section) -> None:
        self.section = section
        need = 0.55 + len(_wrap(section.intro, CONTENT_W, 9)) * _line_h(9)
        first = section.blocks[0] if section.blocks else None
        if isinstance(first, Table):
            need += _TableLayout.of(first, _column_parts(first)[0]).first_need
        cursor = self._room(min(need, TOP - BOTTOM))  # a heading never ends a page
        if cursor.y < TOP - 0.01:
            cursor.y -= 0.12
        self._text(
            cursor,
            MARGIN,
            cursor.y,
            f"{section.number}  {section.title}",
            fontsize=15,
            weight="bold",
            color=INK,
        )
        cursor.y -= 0.34
        if section.intro:
            self.paragraph(section.intro, 9, MUTED)
        cursor.y -= 0.06

    def paragraph(self, text: str, points: float, color: str) -> None:
        lines = _wrap(text, CONTENT_W, points)
        cursor = self._room(len(lines) * _line_h(points))
        for line in lines:
            self._text(cursor, MARGIN, cursor.y, line, fontsize=points, color=color)
            cursor.y -= _line_h(points)
        cursor.y -= 0.06

    def note(self, note: Note) -> None:
        background, edge = NOTE_COLOURS.get(note.level, NOTE_COLOURS["info"])
        points = 9
        lines = _wrap(note.text, CONTENT_W - 0.3, points)
        height = len(lines) * _line_h(points) + 2 * PAD + 0.06
        cursor = self._room(height + 0.1)
        figure = cursor.figure
        for x, width, colour in ((MARGIN, CONTENT_W, background), (MARGIN, 0.06, edge)):
            _fill(figure, x, cursor.y, width, height, colour)
        y = cursor.y - PAD - 0.03
        weight = "bold" if note.level == "error" else "normal"
        for line in lines:
            self._text(cursor, MARGIN + 0.18, y, line, fontsize=points, color=INK, weight=weight)
            y -= _line_h(points)
        cursor.y -= height + 0.1

    def table(self, table: Table) -> None:
        for part, columns in enumerate(_column_parts(table)):
            suffix = "" if part == 0 else " (continued: more columns)"
            self._table_part(table, columns, table.title + suffix)
        if table.caption:
            self.paragraph(table.caption, 8, MUTED)

    def _table_part(self, table: Table, columns: list[int], title: str) -> None:
        layout = _TableLayout.of(table, columns)
        widths, header, body = layout.widths, layout.header, layout.body
        header_h, heights = layout.header_h, layout.heights
        cursor = self._room(layout.first_need)
        self._text(cursor, MARGIN, cursor.y, title, fontsize=10, weight="bold", color=INK)
        cursor.y -= 0.26
        head = ["head"] * len(columns)
        self._row(cursor, header, widths, header_h, head, [True] * len(columns))
        bold = [c < table.key_columns for c in columns]
        for row_index, (cells, height) in enumerate(zip(body, heights, strict=True)):
            if cursor.y - height < BOTTOM:
                cursor = self._new_text_page()
                self._text(
                    cursor,
                    MARGIN,
                    cursor.y,
                    f"{title} (continued)",
                    fontsize=10,
                    weight="bold",
                    color=INK,
                )
                cursor.y -= 0.26
                self._row(cursor, header, widths, header_h, head, [True] * len(columns))
            styles = table.styles[row_index] if row_index < len(table.styles) else []
            shown = [(styles[c] if c < len(styles) else "") for c in columns]
            zebra = " zebra" if row_index % 2 else ""
            cell_bold = [b and not shown[i] for i, b in enumerate(bold)]
            self._row(cursor, cells, widths, height, [s + zebra for s in shown], cell_bold)
        cursor.y -= 0.16

    def _row(
        self,
        cursor: _Cursor,
        cells: list[list[str]],
        widths: list[float],
        height: float,
        styles: list[str],
        bold: list[bool],
    ) -> None:
        figure = cursor.figure
        x = MARGIN
        for lines, width, style, strong in zip(cells, widths, styles, bold, strict=True):
            words = set(style.split())
            fill = "#eef1f5" if "head" in words else "#f6f7f9" if "zebra" in words else None
            colour = MUTED if "muted" in words else INK
            verdict = words & set(CELL_COLOURS)
            if verdict:
                fill, colour = CELL_COLOURS[verdict.pop()]
            if fill:
                _fill(figure, x, cursor.y, width, height, fill)
            right = "num" in words
            y = cursor.y - PAD
            for text in lines:
                self._text(
                    cursor,
                    x + width - PAD if right else x + PAD,
                    y,
                    text,
                    fontsize=BODY_PT,
                    color=colour,
                    ha="right" if right else "left",
                    weight="bold" if strong or words & set(CELL_COLOURS) else "normal",
                )
                y -= _line_h(BODY_PT)
            x += width
        figure.add_artist(
            Rectangle(
                (MARGIN / PAGE_W, (cursor.y - height) / PAGE_H),
                (x - MARGIN) / PAGE_W,
                0.5 / 72 / PAGE_H,
                transform=figure.transFigure,
                color="#d5dae0",
            )
        )
        cursor.y -= height

    def chart(self, chart: Chart, first: bool) -> None:
        """The HTML's figure on a page of its own, at its own height where the page allows."""
        self.flush()
        figure = chart.figure
        natural_h = float(figure.get_size_inches()[1])
        figure.set_size_inches(PAGE_W, PAGE_H)
        self._frame(figure)
        section = self.section
        heading = f"{section.number}  {section.title}" if section else chart.title
        if section and not first:
            heading += " (continued)"
        figure.text(
            MARGIN / PAGE_W,
            TOP / PAGE_H,
            _escape(heading),
            fontsize=13,
            weight="bold",
            color=INK,
            va="top",
        )
        y = TOP - 0.36
        if section and first and section.intro:  # the section starts on this page
            for line in _wrap(section.intro, CONTENT_W, 9):
                figure.text(
                    MARGIN / PAGE_W, y / PAGE_H, _escape(line), fontsize=9, color=MUTED, va="top"
                )
                y -= _line_h(9)
        caption = _wrap(chart.caption, CONTENT_W, 8.5) if chart.caption else []
        caption_h = len(caption) * _line_h(8.5)
        title_y = y - 0.12
        space_top = title_y - 0.32  # the chart's own title sits above its axes
        space_bottom = BOTTOM + caption_h + (0.15 if caption else 0)
        height = min(space_top - space_bottom, max(natural_h - 0.55, 1.0))
        figure.get_layout_engine().set(
            rect=(
                MARGIN / PAGE_W,
                (space_top - height) / PAGE_H,
                CONTENT_W / PAGE_W,
                height / PAGE_H,
            )
        )
        figure.suptitle(
            figure.get_suptitle(), x=MARGIN / PAGE_W, y=title_y / PAGE_H, ha="left", va="top"
        )
        y = space_top - height - 0.12
        for line in caption:
            figure.text(
                MARGIN / PAGE_W, y / PAGE_H, _escape(line), fontsize=8.5, color=MUTED, va="top"
            )
            y -= _line_h(8.5)
        self.pdf.savefig(figure)


@dataclass
class _TableLayout:
    """Column widths, wrapped cells and row heights of one column part of a table."""

    widths: list[float]
    header: list[list[str]]
    body: list[list[list[str]]]
    header_h: float
    heights: list[float]

    @classmethod
    def of(cls, table: Table, columns: list[int]) -> _TableLayout:
        widths = _column_widths(table, columns)
        pairs = list(zip(columns, widths, strict=True))
        header = [_wrap(table.columns[c], w - 2 * PAD, BODY_PT, True) for c, w in pairs]
        body = [
            [_wrap(row[c], w - 2 * PAD, BODY_PT, c < table.key_columns) for c, w in pairs]
            for row in table.rows
        ]
        line = _line_h(BODY_PT)
        header_h = max(len(cell) for cell in header) * line + 2 * PAD
        heights = [max(len(cell) for cell in cells) * line + 2 * PAD for cells in body]
        return cls(widths, header, body, header_h, heights)

    @property
    def first_need(self) -> float:
        """Room to ask for before drawing: the whole table when it fits on one page (a table
        that fits a page is not split across two), else 40 % of a page, so that a long table
        does not start with a row or two at the foot of a page."""
        whole = 0.3 + self.header_h + sum(self.heights)
        if whole <= TOP - BOTTOM:
            return whole
        return max(0.3 + self.header_h + self.heights[0], 0.4 * (TOP - BOTTOM))


def _natural_widths(table: Table, columns: list[int]) -> list[float]:
    """Each column's width with no wrapping (capped at 80 characters); bold where drawn bold."""
    out = []
    for c in columns:
        bold = c < table.key_columns
        widths = [len(table.columns[c]) * _char_w(BODY_PT, True)]
        widths += [
            max((len(line) for line in str(row[c]).split("\n")), default=0) * _char_w(BODY_PT, bold)
            for row in table.rows
        ]
        out.append(min(max(widths), 80 * _char_w(BODY_PT, bold)) + 2 * PAD + 0.02)
    return out


def _column_parts(table: Table) -> list[list[int]]:
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


def write_pdf(document: Document, path: Path) -> Path:
    """Every section of ``document`` into ``path`` (written under a temporary name first).
    Call after the HTML is written: chart figures are resized here for the page."""
    tmp = path.with_name(f".{path.name}.tmp")
    with (
        matplotlib.rc_context(STYLE),
        PdfPages(
            tmp,
            metadata={
                "Title": f"{document.title}: {document.subtitle}",
                "Creator": f"harness {document.harness_version}",
            },
        ) as pdf,
    ):
        writer = _Writer(pdf, document)
        writer.title_block()
        for section in document.sections:
            first_chart = True
            if section.blocks and isinstance(section.blocks[0], Chart):
                writer.section = section  # its heading goes on the chart's page
            else:
                writer.heading(section)
            for block in section.blocks:
                if isinstance(block, Table):
                    writer.table(block)
                elif isinstance(block, Chart):
                    writer.chart(block, first_chart)
                    first_chart = False
                else:
                    writer.note(block)
        writer.flush()
    tmp.replace(path)
    return path


def _fill(figure: Figure, x: float, top: float, width: float, height: float, colour: str) -> None:
    """A borderless filled box on a page, in inches from the page's bottom-left corner."""
    figure.add_artist(
        Rectangle(
            (x / PAGE_W, (top - height) / PAGE_H),
            width / PAGE_W,
            height / PAGE_H,
            transform=figure.transFigure,
            color=colour,
            lw=0,
        )
    )
