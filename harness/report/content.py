"""The report's content model: sections of tables, charts and notes, and how numbers are printed.

The HTML and the PDF are two renderings of one :class:`Document`, so that they cannot disagree:
the same sections in the same order, the same numbers formatted by the same function. Values are
kept as strings here (formatted with their unit) and are escaped by the writers, never here.
:mod:`harness.report.document` builds the document; this module holds only what it is made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from harness.report.charts import byte_unit

NOT_MEASURED = "—"


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    # per cell: space-separated style words the writers map to looks: "num" (a number, aligned
    # right), "muted", "pass", "fail"
    styles: list[list[str]] = field(default_factory=list)
    key_columns: int = 1  # leading columns: bold, and repeated when a wide table is split (PDF)
    caption: str = ""
    split_columns: bool = False  # a column per run: split over pages (PDF) rather than squeezed


@dataclass
class Chart:
    id: str
    title: str
    figure: Figure
    caption: str = ""


@dataclass
class Note:
    level: str  # "error" (incomplete run), "warning", "info"
    text: str


Block = Table | Chart | Note


@dataclass
class Section:
    id: str
    title: str
    intro: str
    blocks: list[Block]
    number: int = 0


@dataclass
class Document:
    title: str
    subtitle: str
    generated: str
    harness_version: str
    notes: list[Note]
    sections: list[Section]

    def charts(self) -> list[Chart]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Chart)]


# --- formatting ---------------------------------------------------------------------------------


def fmt(value: float | int | None, unit: str = "") -> str:
    """A number as the report prints it: precision that suits its size, the unit's convention
    (% with one decimal, x for factors), and a dash for "not measured" (never 0)."""
    if value is None:
        return NOT_MEASURED
    v = float(value)
    if unit == "x":
        return f"{v:.1f}×"
    if unit in ("%", "% of a core"):
        return f"{v:.1f}"
    if unit in ("steps", "samples", "count"):
        return f"{v:,.0f}"
    magnitude = abs(v)
    if magnitude >= 1000:
        return f"{v:,.0f}"
    if magnitude >= 100:
        return f"{v:.1f}"
    if magnitude >= 10:
        return f"{v:.2f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{v:.3f}" if unit == "" else f"{v:.2f}"
    return f"{v:.3f}" if magnitude >= 0.001 else f"{v:.2e}"


def fmt_field(value: Any) -> str:
    """A hardware or software table value: lists and dicts flattened to one readable line."""
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if not value:
            return NOT_MEASURED
        return "; ".join(fmt_field(item) for item in value)
    if isinstance(value, dict):
        if "name" in value and "index" in value:  # a GPU
            memory = value.get("memory_total_GiB")
            extra = f", {memory} GiB" if isinstance(memory, int | float) else ""
            return f"{value['index']}: {value['name']}{extra}"
        return ", ".join(f"{k}={fmt_field(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def scaled_bytes(values: list[float | None]) -> tuple[list[float | None], str]:
    """Byte counts in one decimal unit that suits the largest (kB, MB, GB, TB)."""
    divisor, unit = byte_unit(max((v for v in values if v is not None), default=0))
    return [None if v is None else v / divisor for v in values], unit


def num_style(value: float | None) -> str:
    """A number cell's style: aligned right, and muted where it shows "not measured"."""
    return "num" if value is not None else "num muted"
