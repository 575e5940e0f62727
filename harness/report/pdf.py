"""The PDF report: the same document as the HTML, laid out on A4 landscape pages by matplotlib.

Only PyPI packages are needed (matplotlib's PdfPages; no browser, no LaTeX): text and tables are
drawn as text on page-sized figures, and each chart is the very figure the HTML shows, resized to
the page with a page header, its section heading and its caption. Fonts are embedded as TrueType
so that the text can be searched and extracted.

Tables too wide for a page are split by columns (the key columns repeat on each part) and tables
too long continue on the next page with their header row repeated; the measuring behind that is
in :mod:`harness.report.pdf_layout`, the drawing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from harness.report.charts import INK, MUTED, STYLE, plain
from harness.report.content import Chart, Document, Note, Section, Table
from harness.report.pdf_layout import (
    BODY_PT,
    BOTTOM,
    CONTENT_W,
    MARGIN,
    PAD,
    PAGE_H,
    PAGE_W,
    TOP,
    TableLayout,
    column_parts,
    line_height,
    wrap_text,
)

HEADER_Y = PAGE_H - 0.32  # running header baseline
CELL_COLOURS = {"pass": ("#e6f4ea", "#17803d"), "fail": ("#fce8e6", "#b3261e")}
NOTE_COLOURS = {
    "error": ("#fce8e6", "#b3261e"),
    "warning": ("#fff7e0", "#e0a100"),
    "info": ("#eaf2fb", "#0b5cab"),
}


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
            plain(f"{doc.title} · {doc.subtitle}"),
            fontsize=8,
            color=MUTED,
        )
        if self.section is not None:
            figure.text(
                1 - MARGIN / PAGE_W,
                HEADER_Y / PAGE_H,
                plain(f"{self.section.number}  {self.section.title}"),
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

    # --- blocks ---------------------------------------------------------------------------------

    def title_block(self) -> None:
        doc = self.document
        cursor = self._new_text_page()
        _put(cursor.figure, MARGIN, cursor.y, doc.title, fontsize=22, weight="bold", color=INK)
        _put(cursor.figure, MARGIN, cursor.y - 0.45, doc.subtitle, fontsize=13, color=MUTED)
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
        need = 0.55 + len(wrap_text(section.intro, CONTENT_W, 9)) * line_height(9)
        first = section.blocks[0] if section.blocks else None
        if isinstance(first, Table):
            need += TableLayout.of(first, column_parts(first)[0]).first_need
        cursor = self._room(min(need, TOP - BOTTOM))  # a heading never ends a page
        if cursor.y < TOP - 0.01:
            cursor.y -= 0.12
        heading = f"{section.number}  {section.title}"
        _put(cursor.figure, MARGIN, cursor.y, heading, fontsize=15, weight="bold", color=INK)
        cursor.y -= 0.34
        if section.intro:
            self.paragraph(section.intro, 9, MUTED)
        cursor.y -= 0.06

    def paragraph(self, text: str, points: float, color: str) -> None:
        lines = wrap_text(text, CONTENT_W, points)
        cursor = self._room(len(lines) * line_height(points))
        cursor.y = _put_lines(cursor.figure, MARGIN, cursor.y, lines, points, color=color)
        cursor.y -= 0.06

    def note(self, note: Note) -> None:
        background, edge = NOTE_COLOURS.get(note.level, NOTE_COLOURS["info"])
        points = 9
        lines = wrap_text(note.text, CONTENT_W - 0.3, points)
        height = len(lines) * line_height(points) + 2 * PAD + 0.06
        cursor = self._room(height + 0.1)
        figure = cursor.figure
        for x, width, colour in ((MARGIN, CONTENT_W, background), (MARGIN, 0.06, edge)):
            _fill(figure, x, cursor.y, width, height, colour)
        weight = "bold" if note.level == "error" else "normal"
        top = cursor.y - PAD - 0.03
        _put_lines(figure, MARGIN + 0.18, top, lines, points, color=INK, weight=weight)
        cursor.y -= height + 0.1

    def table(self, table: Table) -> None:
        for part, columns in enumerate(column_parts(table)):
            suffix = "" if part == 0 else " (continued: more columns)"
            self._table_part(table, columns, table.title + suffix)
        if table.caption:
            self.paragraph(table.caption, 8, MUTED)

    def _table_part(self, table: Table, columns: list[int], title: str) -> None:
        layout = TableLayout.of(table, columns)
        cursor = self._room(layout.first_need)
        self._table_head(cursor, title, layout)
        bold = [c < table.key_columns for c in columns]
        for row_index, (cells, height) in enumerate(zip(layout.body, layout.heights, strict=True)):
            if cursor.y - height < BOTTOM:
                cursor = self._new_text_page()
                self._table_head(cursor, f"{title} (continued)", layout)
            styles = table.styles[row_index] if row_index < len(table.styles) else []
            shown = [(styles[c] if c < len(styles) else "") for c in columns]
            zebra = " zebra" if row_index % 2 else ""
            cell_bold = [b and not shown[i] for i, b in enumerate(bold)]
            looks = [s + zebra for s in shown]
            self._row(cursor, cells, layout.widths, height, looks, cell_bold)
        cursor.y -= 0.16

    def _table_head(self, cursor: _Cursor, title: str, layout: TableLayout) -> None:
        """A table's title and header row: where it starts, and again on each page it goes on."""
        _put(cursor.figure, MARGIN, cursor.y, title, fontsize=10, weight="bold", color=INK)
        cursor.y -= 0.26
        count = len(layout.widths)
        self._row(
            cursor, layout.header, layout.widths, layout.header_h, ["head"] * count, [True] * count
        )

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
            _put_lines(
                figure,
                x + width - PAD if right else x + PAD,
                cursor.y - PAD,
                lines,
                BODY_PT,
                color=colour,
                ha="right" if right else "left",
                weight="bold" if strong or words & set(CELL_COLOURS) else "normal",
            )
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
        _put(figure, MARGIN, TOP, heading, fontsize=13, weight="bold", color=INK)
        y = TOP - 0.36
        if section and first and section.intro:  # the section starts on this page
            y = _put_lines(
                figure, MARGIN, y, wrap_text(section.intro, CONTENT_W, 9), 9, color=MUTED
            )
        caption = wrap_text(chart.caption, CONTENT_W, 8.5) if chart.caption else []
        caption_h = len(caption) * line_height(8.5)
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
        _put_lines(figure, MARGIN, space_top - height - 0.12, caption, 8.5, color=MUTED)
        self.pdf.savefig(figure)


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
            # a section that opens with a chart starts on its page; after a text block, the
            # section's charts are its continuation (no second intro)
            first_chart = bool(section.blocks) and isinstance(section.blocks[0], Chart)
            if first_chart:
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


def _put(figure: Figure, x: float, y: float, text: str, **kwargs: Any) -> None:
    """Text on a page, its top at (x, y) in inches from the page's bottom-left corner; escaped,
    since every string may come from a scenario or the environment."""
    figure.text(x / PAGE_W, y / PAGE_H, plain(text), va="top", **kwargs)


def _put_lines(
    figure: Figure, x: float, y: float, lines: list[str], points: float, **kwargs: Any
) -> float:
    """Lines of text one under the other from ``y`` down; returns the ``y`` below the last."""
    for line in lines:
        _put(figure, x, y, line, fontsize=points, **kwargs)
        y -= line_height(points)
    return y


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
