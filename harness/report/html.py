"""The HTML report: one self-contained file, charts inline as SVG, styles inline, no script.

Escaping is the template engine's job (autoescape on): every string from a scenario or the
environment goes through it, so a scenario named ``<script>...</script>`` shows as text; its
``finalize`` shows control and bidirectional-override characters as escapes first. The one
exception is each chart's SVG, marked safe because matplotlib writes it and escapes the text it
draws; its ids are prefixed with the chart's id, so that many SVGs can share one page.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import matplotlib
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from harness.files import atomic_write
from harness.report.charts import STYLE
from harness.report.content import Chart, Document, Note, Table
from harness.report.runs import Run
from harness.text import xml_text

TEMPLATES = Path(__file__).parent / "templates"
_ID_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def figure_svg(chart: Chart) -> str:
    """The chart as an ``<svg>`` element to inline: no XML prolog, ids unique on the page."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": chart.id}):
        chart.figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8")
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # RDF, no use
    ids = set(re.findall(r'\bid="([^"]+)"', text))

    def prefix(match: re.Match[str]) -> str:
        name = match.group(2)
        return match.group(1) + (f"{chart.id}-{name}" if name in ids else name)

    text = _ID_REFERENCE.sub(prefix, text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{chart.id}" ', 1)


def _cell_class(style: str, column: int, key_columns: int) -> str:
    if style:
        return style
    return "key" if column < key_columns else ""


def _view(block: Table | Chart | Note) -> dict[str, Any]:
    if isinstance(block, Table):
        rows = []
        for r, row in enumerate(block.rows):
            styles = block.styles[r] if r < len(block.styles) else []
            rows.append(
                [
                    (text, _cell_class(styles[c] if c < len(styles) else "", c, block.key_columns))
                    for c, text in enumerate(row)
                ]
            )
        return {
            "kind": "table",
            "id": block.id,
            "title": block.title,
            "columns": block.columns,
            "rows": rows,
            "caption": block.caption,
        }
    if isinstance(block, Chart):
        return {
            "kind": "chart",
            "id": block.id,
            "title": block.title,
            "caption": block.caption,
            "svg": Markup(figure_svg(block)),  # matplotlib writes it and escapes its text
        }
    return {"kind": "note", "level": block.level, "text": block.text}


def _shown(value: Any) -> Any:
    """Every value a template prints, before autoescaping: a string's control characters (NUL,
    ESC, BEL) and bidirectional overrides shown as escapes; the charts' own markup kept."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return xml_text(value)  # tab and line breaks are whitespace in HTML
    return value


def render_html(document: Document, runs: list[Run]) -> str:
    """The whole page as a string (every figure saved as SVG here, before the PDF reuses it)."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=_shown,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    sections = [
        {
            "id": section.id,
            "number": section.number,
            "title": section.title,
            "intro": section.intro,
            "blocks": [_view(block) for block in section.blocks],
        }
        for section in document.sections
    ]
    doc = {
        "title": document.title,
        "subtitle": document.subtitle,
        "generated": document.generated,
        "harness_version": document.harness_version,
        "notes": document.notes,
        "sections": sections,
    }
    return environment.get_template("report.html.j2").render(doc=doc, runs=runs)


def write_html(document: Document, runs: list[Run], path: Path) -> Path:
    text = render_html(document, runs)
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))
    return path
