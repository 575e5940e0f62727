"""The PDF report: the same document as the HTML, laid out on A4 landscape pages by matplotlib.

Only PyPI packages are needed (matplotlib's PdfPages and pypdf; no browser, no LaTeX): text and
tables are drawn as text on page-sized figures, and each chart is the very figure the HTML shows,
saved as a page of the size it takes on its page, right after it, then laid onto it with pypdf
(as a form XObject), so that charts stay vector graphics and a page can hold several. Fonts are
embedded once, as TrueType, so that the text can be searched and extracted.

The document flows: headings, notes, tables and charts follow one another down the page, and a
block starts a new page only when it does not fit on the current one (a heading never ends a
page: it moves with the start of its section). A chart may lose up to 1 - SHRINK of its height
to stay on a page, or to leave room on it for the block after it.

Tables too wide for a page are split by columns (the key columns repeat on each part) and tables
too long continue on the next page with their header row repeated; the measuring behind that is
in :mod:`harness.report.pdf_layout`, the drawing here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from harness.files import atomic_write
from harness.report.charts import INK, MUTED, STYLE, plain
from harness.report.content import Chart, Document, Note, Section, Table
from harness.report.pdf_layout import (
    BODY_PT,
    BOTTOM,
    CONTENT_W,
    LEAST_ROWS,
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
INTRO_PT = 8.5  # a section's introduction
CELL_COLOURS = {"pass": ("#e6f4ea", "#17803d"), "fail": ("#fce8e6", "#b3261e")}
NOTE_COLOURS = {
    "error": ("#fce8e6", "#b3261e"),
    "warning": ("#fff7e0", "#e0a100"),
    "info": ("#eaf2fb", "#0b5cab"),
}


@dataclass
class _Placed:
    """A chart on a page: its figure's size there and its bottom-left corner, in inches."""

    chart: Chart
    x: float
    y: float
    width: float
    height: float


@dataclass
class _Cursor:
    figure: Figure
    y: float  # inches from the page bottom
    charts: list[_Placed] = field(default_factory=list)


class _Writer:
    """Pages in order, each filled from the top until the next block does not fit."""

    def __init__(self, pdf: PdfPages, document: Document) -> None:
        self.pdf = pdf
        self.placed: list[list[_Placed]] = []  # per page, the charts to lay onto it
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
        """Finish the page: save it, then each of its charts as a page of its own size, to be
        laid onto it (:func:`_lay_charts`); one PDF for all, so that fonts are embedded once."""
        if self.cursor is not None:
            self.pdf.savefig(self.cursor.figure)
            for item in self.cursor.charts:
                item.chart.figure.set_size_inches(item.width, item.height)
                self.pdf.savefig(item.chart.figure)
            self.placed.append(self.cursor.charts)
            self.cursor = None

    def _room(self, height: float) -> _Cursor:
        """The current text page if ``height`` inches still fit on it, else a new one."""
        if self.cursor is None or self.cursor.y - height < BOTTOM - EPSILON:
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
        cursor = self._room(_section_need(section))  # a heading never ends a page
        if cursor.y < TOP - 0.01:
            cursor.y -= 0.1
        heading = f"{section.number}  {section.title}"
        _put(cursor.figure, MARGIN, cursor.y, heading, fontsize=14, weight="bold", color=INK)
        cursor.y -= 0.3
        if section.intro:
            self.paragraph(section.intro, INTRO_PT, MUTED)
        cursor.y -= 0.04

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
        stop = _page_break(layout, cursor.y, 0)
        for row_index, (cells, height) in enumerate(zip(layout.body, layout.heights, strict=True)):
            if row_index == stop:
                cursor = self._new_text_page()
                self._table_head(cursor, f"{title} (continued)", layout)
                stop = _page_break(layout, cursor.y, row_index)
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
            strong = strong or "key" in words
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
                color="#d5dae0",
            )
        )
        cursor.y -= height

    def chart(self, chart: Chart, then: float = 0.0) -> None:
        """The HTML's figure at its own height (a page's at most) where the page has room for
        it (down to :data:`SHRINK` of that height if need be), else at the top of the next page.
        It also shrinks (as far) where that leaves room on the page for the block after it
        (``then`` inches)."""
        cursor = self.cursor
        natural_w, natural_h = (float(v) for v in chart.figure.get_size_inches())
        caption = wrap_text(chart.caption, CONTENT_W, 8.5) if chart.caption else []
        caption_h = len(caption) * line_height(8.5)
        after = CHART_GAP + caption_h + 0.16  # below the chart: its caption and a gap
        least = _least_height(natural_h, caption_h)
        gap = CHART_GAP if cursor is not None and cursor.y < TOP - 0.01 else 0.0
        room = (cursor.y - gap - BOTTOM) if cursor is not None else 0.0
        if least + after > room + EPSILON:
            cursor = self._new_text_page()
            gap, room = 0.0, TOP - BOTTOM
        assert cursor is not None
        top = cursor.y - gap
        height = max(min(natural_h, room - after), 1.0)
        if then and height + after + then > room >= least + after + then:
            height = room - after - then  # the next block then fits below it
        width = min(CONTENT_W, natural_w)
        cursor.charts.append(_Placed(chart, MARGIN, top - height, width, height))
        y = top - height - CHART_GAP
        cursor.y = _put_lines(cursor.figure, MARGIN, y, caption, 8.5, color=MUTED) - 0.16


CHART_GAP = 0.1  # inches between a chart and what is above and below it
EPSILON = 0.01  # inches: rounding, not room


def _section_need(section: Section) -> float:
    """Room a section's heading asks for: the heading, its introduction and its first block."""
    need = 0.5 + len(wrap_text(section.intro, CONTENT_W, INTRO_PT)) * line_height(INTRO_PT)
    if section.blocks:
        need += _block_need(section.blocks[0])
    return min(need, TOP - BOTTOM)


def _block_need(block: Table | Chart | Note) -> float:
    """Room a block asks for before it is drawn (the least a chart may take, a table's start)."""
    if isinstance(block, Table):
        return TableLayout.of(block, column_parts(block)[0]).first_need
    if isinstance(block, Chart):
        return _chart_need(block)
    return len(wrap_text(block.text, CONTENT_W - 0.3, 9)) * line_height(9) + 2 * PAD + 0.16


def _page_break(layout: TableLayout, y: float, first: int) -> int:
    """The first row of a table that goes on to the next page when row ``first`` is drawn at
    ``y`` (the row count when the rest fits): as many as fit, but never fewer than LEAST_ROWS
    left for the next page (a few rows alone on a page read badly) where this page keeps as
    many."""
    heights = layout.heights[first:]
    fit, room = 0, y - BOTTOM
    while fit < len(heights) and heights[fit] <= room + EPSILON:
        room -= heights[fit]
        fit += 1
    fit = max(fit, 1)  # a row taller than a page still goes on one
    left = len(heights) - fit
    if 0 < left < LEAST_ROWS and fit - (LEAST_ROWS - left) >= LEAST_ROWS:
        fit -= LEAST_ROWS - left
    return first + fit


SHRINK = 0.5  # a chart may lose this share of its height to stay on a page
HEADING_ROOM = 1.2  # inches a page-tall chart leaves for its section's heading and intro


def _least_height(natural_h: float, caption_h: float) -> float:
    """The least height a chart may be drawn at: most of its own, and never more than a page
    leaves below a section heading (so that a page-tall chart follows its heading)."""
    return min(natural_h * SHRINK, TOP - BOTTOM - caption_h - HEADING_ROOM)


def _chart_need(chart: Chart) -> float:
    """Room a chart asks for: its least height, its caption and the gaps around it."""
    caption = wrap_text(chart.caption, CONTENT_W, 8.5) if chart.caption else []
    caption_h = len(caption) * line_height(8.5)
    natural_h = float(chart.figure.get_size_inches()[1])
    return CHART_GAP + _least_height(natural_h, caption_h) + CHART_GAP + caption_h + 0.16


def _lay_charts(pages: io.BytesIO, placed: list[list[_Placed]], out: IO[bytes]) -> None:
    """Each page with its charts (the pages after it) laid onto it, written to ``out``: each
    chart's page becomes a form XObject drawn at its place (its drawing is not re-parsed)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        FloatObject,
        NameObject,
    )

    pages.seek(0)
    reader = PdfReader(pages)
    writer = PdfWriter()
    index = 0
    for charts in placed:
        page = writer.add_page(reader.pages[index])
        drawing = []
        resources = page[NameObject("/Resources")].get_object()
        if not isinstance(resources, DictionaryObject):  # matplotlib writes one on every page
            raise RuntimeError(f"report.pdf: page {index + 1} as drawn has no resource dictionary")
        forms = resources.get(NameObject("/XObject"))
        forms = DictionaryObject() if forms is None else forms.get_object()
        for offset, item in enumerate(charts, start=1):
            chart = reader.pages[index + offset]
            chart_drawing = chart.get_contents()
            if chart_drawing is None:  # matplotlib draws every figure into a content stream
                raise RuntimeError(f"report.pdf: chart page {index + offset + 1} has no content")
            form = DecodedStreamObject()
            form.set_data(chart_drawing.get_data())
            form[NameObject("/Type")] = NameObject("/XObject")
            form[NameObject("/Subtype")] = NameObject("/Form")
            corners = (0.0, 0.0, item.width * 72, item.height * 72)
            form[NameObject("/BBox")] = ArrayObject([FloatObject(v) for v in corners])
            form[NameObject("/Resources")] = chart[NameObject("/Resources")].clone(writer)
            name = NameObject(f"/Chart{index + offset}")  # pages may share their resources
            # compressed again (read back decoded); pypdf has no public name for _add_object
            forms[name] = writer._add_object(form.flate_encode())
            drawing.append(f"q 1 0 0 1 {item.x * 72:.3f} {item.y * 72:.3f} cm {name} Do Q")
        if drawing:
            resources[NameObject("/XObject")] = forms
            stream = DecodedStreamObject()
            stream.set_data(("\n".join(drawing) + "\n").encode())
            contents = page[NameObject("/Contents")]
            resolved = contents.get_object()
            parts = resolved if isinstance(resolved, list) else [contents]
            page[NameObject("/Contents")] = ArrayObject([*parts, writer._add_object(stream)])
        index += 1 + len(charts)
    if reader.metadata:
        writer.add_metadata(dict(reader.metadata))
    writer.write(out)


def write_pdf(document: Document, path: Path) -> Path:
    """Every section of ``document`` into ``path`` (written under a temporary name first).
    Call after the HTML is written: chart figures are resized here for the page."""
    pages = io.BytesIO()
    with (
        matplotlib.rc_context(STYLE),
        PdfPages(
            pages,
            metadata={
                "Title": f"{document.title}: {document.subtitle}",
                "Creator": f"harness {document.harness_version}",
            },
        ) as pdf,
    ):
        writer = _Writer(pdf, document)
        writer.title_block()
        sections = document.sections
        for number, section in enumerate(sections):
            writer.heading(section)
            for index, block in enumerate(section.blocks):
                if isinstance(block, Table):
                    writer.table(block)
                elif isinstance(block, Chart):
                    # what comes next: the section's next block, or the next section's start
                    if index + 1 < len(section.blocks):
                        then = _block_need(section.blocks[index + 1])
                    elif number + 1 < len(sections):
                        then = _section_need(sections[number + 1])
                    else:
                        then = 0.0
                    writer.chart(block, then)
                else:
                    writer.note(block)
        writer.flush()
    with atomic_write(path) as out:
        _lay_charts(pages, writer.placed, out)
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
            color=colour,
            lw=0,
        )
    )
