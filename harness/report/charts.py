"""What every chart of the report shares: the style, pure helpers on data, and drawing helpers.

The charts themselves are grouped by family: :mod:`harness.report.charts_time` (series over
time, a panel per run), :mod:`harness.report.charts_latency` (fetch latency and batch wait) and
:mod:`harness.report.charts_scenarios` (one figure comparing every run: the study's Figure 7,
stalls, footprint, loss). Each takes runs and returns a matplotlib ``Figure``, nothing drawn on
screen or saved.

Every chart stands on its own when cut out of the report: a title, axes with units, a legend, and
the scenario and condition of each run in its panel title. Figures are made with
``matplotlib.figure.Figure`` directly (no pyplot, no global state, no display), so that building
one is a pure function of its data; the HTML writer saves each as SVG and the PDF writer puts the
same figure on a page.

Long series are thinned for drawing only (:func:`downsample` keeps each bucket's mean and its
min-max band, so a spike still shows); every number printed on a chart (means, percentiles) comes
from the run's summary or from the full data, never from the thinned points.

Units: MB = 10^6 bytes, MiB = 2^20 bytes; times in seconds since the run started.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch
from matplotlib.typing import RcKeyType

from harness.report.runs import Run

MAX_POINTS = 600  # points drawn per line; statistics use every sample
CDF_POINTS = 800
WIDTH_IN = 11.0
ROW_IN = 2.5
TITLE_IN = 0.75
CATEGORY_COLORS = {
    "video cached": "#0072B2",
    "video decoded": "#D55E00",
    "image collage": "#009E73",
    "other": "#7f7f7f",
}
# One colour per GPU (or per rank) within a panel; runs have their own colours (runs.PALETTE).
PALETTE_GPU = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999")
WARMUP_COLOR = "#e8e8e8"
INK = "#222222"
MUTED = "#666666"

STYLE: dict[RcKeyType, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "axes.edgecolor": "#888888",
    "axes.labelcolor": INK,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 12,
    "figure.titleweight": "bold",
    "svg.fonttype": "none",  # text stays text in the HTML: selectable, searchable
    "pdf.fonttype": 42,  # TrueType in the PDF: text that pdftotext and readers can extract
    "axes.formatter.use_mathtext": False,
    "text.usetex": False,
}


def plain(text: object) -> str:
    """A string from a scenario or the environment, made safe for matplotlib: a ``$`` would
    otherwise start mathtext (and could fail the drawing)."""
    return str(text).replace("$", r"\$")


# --- pure helpers on data -----------------------------------------------------------------------


@dataclass(frozen=True)
class Thinned:
    """A series reduced for drawing: bucket centres, means, and each bucket's min and max."""

    t: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    reduced: bool


def downsample(t: Sequence[float], y: Sequence[float], max_points: int = MAX_POINTS) -> Thinned:
    """At most ``max_points`` points for drawing: equal-count buckets, each drawn at its mean
    time with its mean value, plus its min and max (a band), so peaks and dips survive. Samples
    that are not finite (the first rate sample, say) are left out. Pure; never used for stats."""
    times = np.asarray(t, dtype=np.float64)
    values = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(times) & np.isfinite(values)
    times, values = times[keep], values[keep]
    n = values.size
    if n <= max_points:
        return Thinned(times, values, values, values, False)
    starts = np.linspace(0, n, max_points + 1).astype(np.int64)[:-1]
    counts = np.diff(np.append(starts, n))
    return Thinned(
        np.add.reduceat(times, starts) / counts,
        np.add.reduceat(values, starts) / counts,
        np.minimum.reduceat(values, starts),
        np.maximum.reduceat(values, starts),
        True,
    )


def cdf_points(
    values: Sequence[float] | np.ndarray, max_points: int = CDF_POINTS
) -> tuple[np.ndarray, ...]:
    """(x, fraction of samples <= x) for an empirical CDF, from all the data; when there are
    more than ``max_points`` samples, points are picked evenly in rank plus densely in the tail
    (the last 10 %, 1 %, 0.1 % ...), where storage latency lives."""
    data = np.sort(np.asarray(values, dtype=np.float64))
    data = data[np.isfinite(data)]
    n = data.size
    if n == 0:
        return np.array([]), np.array([])
    if n <= max_points:
        index = np.arange(n)
    else:
        even = np.linspace(0, n - 1, max_points // 2)
        tail = (n - 1) - np.geomspace(1, n - 1, max_points // 2)
        index = np.unique(np.concatenate([even, tail, [0, n - 1]]).round().astype(np.int64))
    return data[index], (index + 1) / n


def combine_ranks(
    frame: pd.DataFrame, column: str, rate_hz: float | None, how: str = "sum"
) -> tuple[np.ndarray, np.ndarray]:
    """One series from a per-rank table: rank 0's as is; several ranks' samples put on the
    collector's tick (1 / rate) and summed (bytes, CPU of each rank's processes) or averaged."""
    if column not in frame.columns or frame.empty:
        return np.array([]), np.array([])
    if "rank" not in frame.columns or frame["rank"].nunique() <= 1:
        return frame["t"].to_numpy(float), frame[column].to_numpy(float)
    period = 1.0 / rate_hz if rate_hz else 0.1
    ticks = (frame["t"] / period).round().astype(np.int64)
    grouped = frame.assign(_tick=ticks).groupby("_tick")
    values = grouped[column].sum(min_count=1) if how == "sum" else grouped[column].mean()
    return values.index.to_numpy(float) * period, values.to_numpy(float)


def measured_latencies(run: Run) -> np.ndarray:
    """Fetch latency (ms) of the samples consumed by measured steps, the set the summary's
    percentiles are computed on."""
    steps, samples = run.table("steps"), run.table("samples")
    if steps is None or samples is None or samples.empty:
        return np.array([])
    measured = steps[~steps["warmup"].astype(bool)][["rank", "step"]]
    consumed = samples.merge(measured, on=["rank", "step"])
    values = consumed["latency_ms"].to_numpy(float)
    return values[np.isfinite(values) & (values > 0)]  # NaN: a backend that cannot time samples


BYTE_UNITS = ((12, "TB"), (9, "GB"), (6, "MB"), (3, "kB"))  # (power of ten, name)


def byte_unit(largest: float) -> tuple[float, str]:
    """A decimal unit that keeps the largest value readable: (divisor, name)."""
    for exponent, name in BYTE_UNITS:
        if largest >= 10.0**exponent:
            return 10.0**exponent, name
    return 1.0, "B"


def byte_exponent(unit: str) -> int:
    """The power of ten of a unit :func:`byte_unit` names (``"GB"`` -> 9), for axis labels."""
    return dict((name, exponent) for exponent, name in BYTE_UNITS).get(unit, 0)


# --- drawing helpers ----------------------------------------------------------------------------


def titled_figure(title: str, height_in: float, width_in: float = WIDTH_IN) -> Figure:
    """An empty figure with the chart's title at its top left; constrained layout, so that
    panel titles and legends beside the panels are never cut."""
    layout = ConstrainedLayoutEngine(h_pad=0.06, w_pad=0.08, hspace=0.06, wspace=0.04)
    figure = Figure(figsize=(width_in, height_in), layout=layout)
    figure.suptitle(title, x=0.01, ha="left")
    return figure


def _panel_title(ax: Any, run: Run) -> None:
    """The run and its condition above a panel, wrapped to the panel's width."""
    status = "" if run.complete else "  [INCOMPLETE]"
    width_in = ax.get_position().width * ax.get_figure().get_figwidth()
    chars = max(30, int(width_in * 13))
    text = "\n".join(
        textwrap.wrap(plain(run.label) + status, chars) + textwrap.wrap(plain(run.condition), chars)
    )
    ax.set_title(text, loc="left", fontsize=8.5, color=INK)


def not_available(ax: Any, reason: str, wrap: int = 70) -> None:
    """An empty panel, framed in dashes, that says in words why there is nothing to draw."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("#cccccc")
        spine.set_linestyle((0, (3, 3)))
    ax.text(
        0.5,
        0.5,
        "\n".join(
            wrapped
            for line in plain(reason).split("\n")
            for wrapped in textwrap.wrap(line, wrap) or [""]
        ),
        ha="center",
        va="center",
        transform=ax.transAxes,
        color=MUTED,
        fontsize=9,
    )


def warmup_band(ax: Any, run: Run) -> Patch | None:
    """Grey the warm-up (not measured) behind a series over time; its legend entry, if any."""
    end = run.warmup_end()
    if end is None or end <= 0:
        return None
    ax.axvspan(0, end, color=WARMUP_COLOR, zorder=0, lw=0)
    return Patch(color=WARMUP_COLOR, label="warm-up (not measured)")


def draw_line(ax: Any, t: Any, y: Any, *, color: str, label: str, width: float = 1.2) -> None:
    """A series thinned for drawing (:func:`downsample`), with its min-max band when thinned."""
    thinned = downsample(t, y)
    if thinned.reduced:
        ax.fill_between(thinned.t, thinned.low, thinned.high, color=color, alpha=0.18, lw=0)
    ax.plot(thinned.t, thinned.mean, color=color, lw=width, label=label)


def grid_figure(title: str, rows: list[list[Run | None]]) -> tuple[Figure, np.ndarray]:
    """A figure of per-run panels, a column per machine and a row per scenario; a cell with
    no run (a machine that did not run that scenario) is left blank."""
    columns = max(len(row) for row in rows)
    width = max(WIDTH_IN, 4.2 * columns)
    figure = titled_figure(title, TITLE_IN + ROW_IN * len(rows), width)
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(columns):
            if c >= len(row) or row[c] is None:
                axes[r, c].set_axis_off()
    return figure, axes


def panels(
    axes: np.ndarray,
    rows: list[list[Run | None]],
    table: str,
    what: str,
    usable: Callable[[Run], bool] | None = None,
) -> Iterator[tuple[Any, Run, pd.DataFrame]]:
    """(axes, run, its table) for every panel of a grid of runs that has data to draw; a panel
    whose table is missing or empty (or not ``usable``) says so instead."""
    for r, row in enumerate(rows):
        for c, run in enumerate(row):
            if run is None:
                continue
            ax = axes[r, c]
            _panel_title(ax, run)
            frame = run.table(table)
            missing = frame is None or frame.empty if usable is None else not usable(run)
            if missing:
                not_available(ax, f"{what} {run.unavailable(table)}")
                continue
            yield ax, run, frame


def panel_legend(ax: Any, extra: list | None = None, **kwargs: Any) -> None:
    """Beside the panel when it has the page's width; inside it, framed, when panels stand side
    by side (machines compared) and the width is needed for the data."""
    handles, labels = ax.get_legend_handles_labels()
    for item in extra or []:
        if item is not None:
            handles.append(item)
            labels.append(item.get_label())
    if not handles:
        return
    if ax.get_subplotspec().get_gridspec().ncols == 1:
        options = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "ncols": 1, **kwargs}
    else:
        options = {"loc": "upper right", "frameon": True, "framealpha": 0.85, "fontsize": 7}
        options["ncols"] = kwargs.get("ncols", 1)
        options["edgecolor"] = "#dddddd"
    ax.legend(handles, labels, **options)


def time_axis(ax: Any) -> None:
    ax.set_xlabel("time since the run started (s)")
    ax.set_xlim(left=0)


def wrap_label(text: str, width: int) -> str:
    """A run's label for a tick: escaped for matplotlib and wrapped (never empty)."""
    return "\n".join(textwrap.wrap(plain(text), width)) or " "
