"""The report's charts: runs in, a matplotlib ``Figure`` out, nothing drawn on screen or saved.

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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from harness.report.runs import Run, by_category
from harness.stats import window_mean

# The study's Figure 7 (WP-7300): average GPU utilisation of its two video experiments.
STUDY_CACHED_PCT = 97.3
STUDY_DECODED_PCT = 58.1
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
WARMUP_COLOR = "#e8e8e8"
INK = "#222222"
MUTED = "#666666"

STYLE = {
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


def cdf_points(values: Sequence[float], max_points: int = CDF_POINTS) -> tuple[np.ndarray, ...]:
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


def byte_unit(largest: float) -> tuple[float, str]:
    """A decimal unit that keeps the largest value readable: (divisor, name)."""
    for divisor, name in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if largest >= divisor:
            return divisor, name
    return 1.0, "B"


# --- drawing helpers ----------------------------------------------------------------------------


def _figure(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    figure.get_layout_engine().set(h_pad=0.06, w_pad=0.08, hspace=0.06, wspace=0.04)
    return figure


def _panel_title(ax, run: Run) -> None:
    """The run and its condition above a panel, wrapped to the panel's width."""
    status = "" if run.complete else "  [INCOMPLETE]"
    width_in = ax.get_position().width * ax.get_figure().get_figwidth()
    chars = max(30, int(width_in * 13))
    text = "\n".join(
        textwrap.wrap(plain(run.label) + status, chars) + textwrap.wrap(plain(run.condition), chars)
    )
    ax.set_title(text, loc="left", fontsize=8.5, color=INK)


def _not_available(ax, reason: str, wrap: int = 70) -> None:
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


def _warmup(ax, run: Run) -> Patch | None:
    end = run.warmup_end()
    if end is None or end <= 0:
        return None
    ax.axvspan(0, end, color=WARMUP_COLOR, zorder=0, lw=0)
    return Patch(color=WARMUP_COLOR, label="warm-up (not measured)")


def _line(ax, t, y, *, color: str, label: str, width: float = 1.2) -> None:
    thinned = downsample(t, y)
    if thinned.reduced:
        ax.fill_between(thinned.t, thinned.low, thinned.high, color=color, alpha=0.18, lw=0)
    ax.plot(thinned.t, thinned.mean, color=color, lw=width, label=label)


def _grid_figure(title: str, rows: list[list[Run | None]]) -> tuple[Figure, np.ndarray]:
    columns = max(len(row) for row in rows)
    width = max(WIDTH_IN, 4.2 * columns)
    figure = _figure(TITLE_IN + ROW_IN * len(rows), width)
    axes = figure.subplots(len(rows), columns, squeeze=False)
    figure.suptitle(title, x=0.01, ha="left")
    for r, row in enumerate(rows):
        for c in range(columns):
            if c >= len(row) or row[c] is None:
                axes[r, c].set_axis_off()
    return figure, axes


def _panels(
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
                _not_available(ax, f"{what} {run.unavailable(table)}")
                continue
            yield ax, run, frame


def _legend(ax, extra: list | None = None, **kwargs) -> None:
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


def _time_axis(ax) -> None:
    ax.set_xlabel("time since the run started (s)")
    ax.set_xlim(left=0)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(plain(text), width)) or " "


# --- the charts ---------------------------------------------------------------------------------


def utilisation_bars(runs: list[Run]) -> Figure:
    """The study's Figure 7: average utilisation per scenario, cached vs decoded (and the
    collage), with the study's 97.3 % and 58.1 % as reference lines. Without a GPU the loop's
    busy % (compute time / wall time) stands in, hatched and labelled as such."""
    ordered = by_category(runs)
    values = [run.utilisation() for run in ordered]
    sources = {source for value, source in values if value is not None}
    figure = _figure(4.9)
    ax = figure.subplots()
    if sources == {"gpu"}:
        title = "Average GPU utilisation per scenario (as the study's Figure 7)"
        ylabel = "average GPU utilisation, NVML (%)"
    elif sources == {"busy"} or not sources:
        title = (
            "Loop busy % per scenario, in place of GPU utilisation (no GPU sampled) "
            "(as the study's Figure 7)"
        )
        ylabel = "loop busy: compute time / wall time (%)"
    else:
        title = "Average utilisation per scenario (as the study's Figure 7)"
        ylabel = "NVML GPU utilisation, or loop busy where no GPU (%)"
    figure.suptitle(title, x=0.01, ha="left")
    x = np.arange(len(ordered))
    for i, (run, (value, source)) in enumerate(zip(ordered, values, strict=True)):
        color = CATEGORY_COLORS[run.category]
        if value is None:
            ax.text(i, 2, "not\nmeasured", ha="center", va="bottom", color=MUTED, fontsize=8)
            continue
        ax.bar(
            i,
            value,
            width=0.62,
            color=color,
            alpha=0.9 if source == "gpu" else 0.6,
            hatch="" if source == "gpu" else "///",
            edgecolor="white",
            lw=0.8,
        )
        ax.text(i, value + 1.2, f"{value:.1f} %", ha="center", va="bottom", fontsize=9, color=INK)
    references = []
    for level, name in ((STUDY_CACHED_PCT, "video cached"), (STUDY_DECODED_PCT, "video decoded")):
        color = CATEGORY_COLORS[name]
        ax.axhline(level, color=color, ls=(0, (5, 3)), lw=1.3, zorder=1)
        references.append(
            Line2D([], [], color=color, ls=(0, (5, 3)), lw=1.3, label=f"study, {name}: {level} %")
        )
    ax.set_xticks(
        x,
        [
            _wrap(run.label, max(12, 120 // max(len(ordered), 1)))
            + f"\n{run.category}\n{run.page_cache or '?'} page cache"
            + ("" if run.complete else "\n[INCOMPLETE]")
            for run in ordered
        ],
        fontsize=8,
    )
    pad = max(0.0, (3 - len(ordered)) * 0.5)  # one or two bars stay bar-wide, centred
    ax.set_xlim(-0.6 - pad, len(ordered) - 0.4 + pad)
    ax.set_ylim(0, 110)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    present = list(dict.fromkeys(run.category for run in ordered))
    handles: list = [Patch(color=CATEGORY_COLORS[c], label=c) for c in present]
    if "busy" in sources:
        handles.append(
            Patch(facecolor="white", edgecolor=MUTED, hatch="///", label="loop busy % (no GPU)")
        )
    handles += references
    ax.legend(handles=handles, loc="lower left", ncols=len(handles), bbox_to_anchor=(0.0, 1.0))
    return figure


def gpu_timeline(rows: list[list[Run | None]]) -> Figure:
    """Per-GPU NVML utilisation over time, one panel per run; a panel says why when no GPU."""
    title = "GPU utilisation over time, per GPU (NVML, %)"
    present = [run for row in rows for run in row if run is not None]
    if not any(has_gpu_series(run) for run in present):
        figure = _figure(TITLE_IN + 0.5 + 0.32 * len(present))
        ax = figure.subplots()
        figure.suptitle(title, x=0.01, ha="left")
        lines = [f"{run.label}: {run.unavailable('series_gpu')}" for run in present]
        _not_available(ax, "No GPU was sampled in these runs.\n\n" + "\n".join(lines), wrap=160)
        return figure
    figure, axes = _grid_figure(title, rows)
    for ax, run, frame in _panels(axes, rows, "series_gpu", "GPU series", usable=has_gpu_series):
        warm = _warmup(ax, run)
        groups = list(frame.groupby(["rank", "gpu"] if "rank" in frame else ["gpu"]))
        window = _window(run)
        for index, (key, part) in enumerate(groups):
            rank, gpu = key if len(key) == 2 else (0, key[0])
            mean = run.value(f"gpu_util_pct[{gpu}]") if rank == 0 else None
            if mean is None and window is not None:
                mean = window_mean(part["t"], part["gpu_util_pct"], *window)
            name = f"GPU {gpu}" if rank == 0 else f"rank {rank} GPU {gpu}"
            mean_text = "" if mean is None else f": mean {mean:.1f} %"
            color = PALETTE_GPU[index % len(PALETTE_GPU)]
            _line(ax, part["t"], part["gpu_util_pct"], color=color, label=name + mean_text)
        ax.set_ylim(0, 105)
        ax.set_ylabel("GPU utilisation (%)")
        _time_axis(ax)
        _legend(ax, [warm], ncols=1 if len(groups) < 9 else 2)
    return figure


def has_gpu_series(run: Run) -> bool:
    frame = run.table("series_gpu")
    return frame is not None and not frame.empty and "gpu_util_pct" in frame.columns


PALETTE_GPU = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999")


def _window(run: Run) -> tuple[float, float] | None:
    from harness.summary import measured_window

    steps = run.table("steps")
    return None if steps is None or steps.empty else measured_window(steps)


def read_throughput(rows: list[list[Run | None]]) -> Figure:
    """Bytes the run's processes read from storage per second, over time, with the mean over
    the measured window (the summary's number) and what the pipeline asked for."""
    figure, axes = _grid_figure(
        "Storage read throughput over time (MB/s, 1 MB = 10^6 bytes; /proc read_bytes of the "
        "run's processes)",
        rows,
    )
    for ax, run, frame in _panels(axes, rows, "series_io", "I/O series"):
        warm = _warmup(ax, run)
        t, y = combine_ranks(frame, "read_MBps", run.rate_hz, "sum")
        _line(ax, t, y, color=run.color, label="read from storage")
        mean = run.value("read_MBps")
        if mean is None:
            window = _window(run)
            mean = window_mean(t, y, *window) if window else None
        if mean is not None:
            ax.axhline(mean, color=INK, ls="--", lw=1.1, label=f"mean: {mean:.2f} MB/s")
        requested = run.value("requested_MBps")
        if requested is not None:
            ax.axhline(
                requested,
                color=MUTED,
                ls=":",
                lw=1.2,
                label=f"pipeline asked for: {requested:.2f} MB/s",
            )
        ax.set_ylim(bottom=0)
        ax.set_ylabel("read (MB/s)")
        _time_axis(ax)
        _legend(ax, [warm])
    return figure


def latency_cdf(runs: list[Run]) -> Figure:
    """Fetch latency of one sample (read + decode + transform, in the worker): the CDF, and the
    tail as the fraction of samples slower than x on a log scale."""
    figure = _figure(4.6)
    left, right = figure.subplots(1, 2)
    figure.suptitle(
        "Fetch latency per sample (read + decode + transform, measured in the worker; ms)",
        x=0.01,
        ha="left",
    )
    drawn = 0
    for run in by_category(runs):
        latencies = measured_latencies(run)
        if latencies.size == 0:
            continue
        drawn += 1
        x, p = cdf_points(latencies)
        p99 = run.value("fetch_latency_p99_ms")
        label = plain(run.label) + ("" if p99 is None else f" (p99 {p99:.1f} ms)")
        left.plot(x, p, color=run.color, lw=1.4, label=label)
        exceed = 1 - p + 0.5 / latencies.size  # never 0 on a log axis
        right.plot(x, exceed, color=run.color, lw=1.4, label=label)
    if drawn == 0:
        for ax in (left, right):
            _not_available(
                ax, "no fetch latency recorded in any run (the DALI backend cannot time samples)"
            )
        return figure
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("fetch latency per sample (ms, log scale)")
    left.set_ylim(0, 1.01)
    left.set_ylabel("fraction of samples at or below (CDF)")
    left.set_title("CDF", loc="left")
    for q in (0.5, 0.9, 0.99):
        left.axhline(q, color="#bbbbbb", lw=0.8, ls=":")
    right.set_yscale("log")
    right.set_ylabel("fraction of samples slower (log scale)")
    right.set_title("tail: p90 at 10^-1, p99 at 10^-2, p99.9 at 10^-3", loc="left")
    left.legend(loc="lower right")
    return figure


def batch_wait(rows: list[list[Run | None]]) -> Figure:
    """How long the training loop waited for each batch, step by step, with p50 and p99."""
    figure, axes = _grid_figure("Per-batch wait: the loop's wait for its next batch (ms)", rows)
    for ax, run, steps in _panels(axes, rows, "steps", "steps"):
        warm_steps = steps[steps["warmup"].astype(bool)]
        if not warm_steps.empty:
            ax.axvspan(-0.5, warm_steps["step"].max() + 0.5, color=WARMUP_COLOR, lw=0, zorder=0)
        for rank, part in steps.groupby("rank"):
            name = "wait per batch" if steps["rank"].nunique() == 1 else f"rank {rank}"
            color = run.color if rank == 0 else PALETTE_GPU[int(rank) % len(PALETTE_GPU)]
            _line(ax, part["step"], part["wait_s"] * 1000, color=color, label=name, width=1.0)
        for name, style in (("p50", "--"), ("p99", ":")):
            value = run.value(f"batch_wait_{name}_ms")
            if value is not None:
                ax.axhline(value, color=INK, ls=style, lw=1.0, label=f"{name}: {value:.1f} ms")
        _measured_scale(ax, steps)
        ax.set_xlabel("training step")
        ax.set_ylabel("wait for the batch (ms)")
        warm = Patch(color=WARMUP_COLOR, label="warm-up steps") if len(warm_steps) else None
        _legend(ax, [warm])
    return figure


def _measured_scale(ax, steps: pd.DataFrame) -> None:
    """Scale the wait axis to the measured steps: a cold first batch (often 10-100x the others)
    would flatten them. Its peak is then written in the warm-up band instead."""
    waits = steps["wait_s"].to_numpy(float) * 1000
    warm = steps["warmup"].to_numpy(bool)
    measured_top = float(np.nanmax(waits[~warm])) if (~warm).any() else None
    warm_top = float(np.nanmax(waits[warm])) if warm.any() else None
    if measured_top is None or warm_top is None or warm_top <= measured_top * 1.5:
        ax.set_ylim(bottom=0)
        return
    top = max(measured_top * 1.25, 1e-3)
    ax.set_ylim(0, top)
    ax.text(
        float(steps.loc[steps["warmup"].astype(bool), "step"].mean()),
        top * 0.96,
        f"warm-up peak\n{warm_top:.0f} ms\n(off scale)",
        ha="center",
        va="top",
        fontsize=7,
        color=MUTED,
    )


def stall_breakdown(runs: list[Run]) -> Figure:
    """Where the wall time of the measured steps went: computing, waiting for data, other."""
    ordered = by_category(runs)
    figure = _figure(TITLE_IN + 0.9 + 0.55 * len(ordered))
    ax = figure.subplots()
    figure.suptitle(
        "Stall breakdown: share of the measured steps' wall time (%)", x=0.01, ha="left"
    )
    parts = (
        ("computing (loop busy)", "#0072B2"),
        ("waiting for data", "#D55E00"),
        ("other (step overhead)", "#bbbbbb"),
    )
    y = np.arange(len(ordered))[::-1]
    for row, run in zip(y, ordered, strict=True):
        busy, wait = run.value("busy_pct"), run.value("data_wait_pct")
        if busy is None or wait is None:
            ax.text(1, row, "not measured", va="center", color=MUTED)
            continue
        shares = (busy, wait, max(0.0, 100.0 - busy - wait))
        left = 0.0
        for (name, color), share in zip(parts, shares, strict=True):
            ax.barh(row, share, left=left, color=color, height=0.6, label=name)
            if share >= 4:
                ax.text(
                    left + share / 2,
                    row,
                    f"{share:.1f} %",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if color != "#bbbbbb" else INK,
                )
            left += share
    ax.set_yticks(
        y,
        [
            _wrap(run.label, 40) + ("" if run.complete else " [INCOMPLETE]") + "\n"
            f"{plain(run.category)}, {run.page_cache or '?'} cache"
            for run in ordered
        ],
        fontsize=8,
    )
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of wall time of the measured steps (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(
        handles=[Patch(color=color, label=name) for name, color in parts],
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=3,
    )
    return figure


def cpu_timeline(rows: list[list[Run | None]]) -> Figure:
    """CPU over time: the run's processes (as % of all the machine's cores) and the whole
    machine (mean of its cores)."""
    figure, axes = _grid_figure("CPU utilisation over time (% of all cores)", rows)
    for ax, run, frame in _panels(axes, rows, "series_cpu", "CPU series"):
        warm = _warmup(ax, run)
        cores = _cores(run, frame)
        t, tree = combine_ranks(frame, "cpu_pct", run.rate_hz, "sum")
        tree_mean = run.value("cpu_pct")
        label = f"the run's processes ({cores} cores = 100 %)"
        if tree_mean is not None:
            label += f": mean {tree_mean / cores:.1f} %"
        _line(ax, t, tree / cores, color=run.color, label=label)
        if "cpu_cores_pct" in frame.columns:
            first = frame[frame["rank"] == frame["rank"].min()] if "rank" in frame else frame
            machine_mean = run.value("cpu_cores_pct")
            label = "whole machine" + (
                "" if machine_mean is None else f": mean {machine_mean:.1f} %"
            )
            _line(ax, first["t"], first["cpu_cores_pct"], color=MUTED, label=label, width=0.9)
        ax.set_ylim(0, 105)
        ax.set_ylabel("CPU (% of all cores)")
        _time_axis(ax)
        _legend(ax, [warm])
    return figure


def _cores(run: Run, frame: pd.DataFrame) -> int:
    per_core = [c for c in frame.columns if c.startswith("cpu_core_pct[")]
    if per_core:
        return len(per_core)
    cores = (run.manifest.get("hardware") or {}).get("cpu_logical_cores")
    return cores if isinstance(cores, int) and cores > 0 else 1


def footprint(runs: list[Run]) -> Figure:
    """The study's trade-off: what each way of feeding stores (compressed videos, frame cache,
    the expansion between them) beside the utilisation it buys."""
    ordered = [run for run in by_category(runs) if run.value("storage_bytes") is not None]
    figure = _figure(TITLE_IN + 1.0 + 0.6 * max(len(ordered), 2))
    left, right = figure.subplots(1, 2, width_ratios=(1.5, 1), sharey=True)
    figure.suptitle(
        "Storage footprint and the utilisation it buys (the study's trade-off)", x=0.01, ha="left"
    )
    if not ordered:
        for ax in (left, right):
            _not_available(ax, "no run recorded its storage footprint")
        return figure
    largest = max(
        (run.value("storage_bytes") or 0) + (run.value("cache_bytes") or 0) for run in ordered
    )
    divisor, unit = byte_unit(largest)
    y = np.arange(len(ordered))[::-1]
    for row, run in zip(y, ordered, strict=True):
        stored = (run.value("storage_bytes") or 0) / divisor
        cache = (run.value("cache_bytes") or 0) / divisor
        is_video = run.kind == "video"
        left.barh(row, stored, color="#56B4E9" if is_video else "#009E73", height=0.6)
        if cache:
            left.barh(row, cache, left=stored, color="#0072B2", height=0.6)
        expansion = run.value("expansion")
        text = f"{stored + cache:.3g} {unit}"
        if expansion is not None:
            text += f" (frame cache {expansion:.1f}× the videos)"
        left.text(stored + cache, row, "  " + text, va="center", fontsize=8, color=INK)
        value, source = run.utilisation()
        if value is not None:
            right.barh(
                row,
                value,
                height=0.6,
                color=CATEGORY_COLORS[run.category],
                hatch="" if source == "gpu" else "///",
                alpha=0.9 if source == "gpu" else 0.6,
                edgecolor="white",
            )
            name = "GPU" if source == "gpu" else "busy"
            right.text(value + 1, row, f"{value:.1f} % {name}", va="center", fontsize=8)
    left.set_yticks(y, [_wrap(run.label, 34) + f"\n{run.category}" for run in ordered], fontsize=8)
    left.set_xlim(0, largest / divisor * 1.7)
    left.set_xlabel(f"bytes on the storage under test ({unit}, 1 {unit} = 10^{_exp(unit)} bytes)")
    left.legend(
        handles=[
            Patch(color="#56B4E9", label="compressed videos"),
            Patch(color="#0072B2", label="frame cache (frames + masks)"),
            Patch(color="#009E73", label="images"),
        ],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=3,
    )
    right.set_xlim(0, 118)
    right.set_xlabel("utilisation (%): NVML GPU, or loop busy (hatched) without a GPU")
    right.legend(
        handles=[
            Patch(color=MUTED, label="NVML GPU"),
            Patch(facecolor="white", edgecolor=MUTED, hatch="///", label="loop busy % (no GPU)"),
        ],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=2,
    )
    for ax in (left, right):
        ax.grid(axis="y", visible=False)
    return figure


def _exp(unit: str) -> int:
    return {"TB": 12, "GB": 9, "MB": 6, "kB": 3}.get(unit, 0)


def loss_curves(runs: list[Run]) -> Figure:
    """Training loss per step (rank 0), the evidence that each run trained for real; the
    legend gives the held-out mIoU against the always-one-class chance level."""
    figure = _figure(4.4)
    ax = figure.subplots()
    figure.suptitle(
        "Training loss per step (cross-entropy): evidence the training was real", x=0.01, ha="left"
    )
    drawn = 0
    for run in by_category(runs):
        steps = run.table("steps")
        if steps is None or steps.empty:
            continue
        first = steps[steps["rank"] == steps["rank"].min()].sort_values("step")
        label = plain(run.label)
        miou, chance = run.value("miou"), run.value("miou_chance")
        if miou is not None:
            label += f" (held-out mIoU {miou:.3f}"
            label += ")" if chance is None else f", chance {chance:.3f})"
        _line(ax, first["step"], first["loss"], color=run.color, label=label)
        drawn += 1
    if not drawn:
        _not_available(ax, "no training steps recorded in any run")
        return figure
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure
