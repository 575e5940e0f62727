"""The report's latency charts: how long one sample takes to fetch (its CDF and tail, every run
on one pair of axes) and how long the training loop waits for each batch (a panel per run).

Curves are drawn from every measured sample (:func:`harness.report.charts.cdf_points` picks the
points, dense in the tail); the percentiles in the legends are the runs' summary numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from harness.report.charts import (
    INK,
    MUTED,
    PALETTE_GPU,
    WARMUP_COLOR,
    cdf_points,
    draw_line,
    grid_figure,
    measured_latencies,
    not_available,
    panel_legend,
    panels,
    plain,
    titled_figure,
)
from harness.report.runs import Run, by_category


def latency_cdf(runs: list[Run]) -> Figure:
    """Fetch latency of one sample (read + decode + transform, in the worker): the CDF, and the
    tail as the fraction of samples slower than x on a log scale."""
    figure = titled_figure(
        "Fetch latency per sample (read + decode + transform, measured in the worker; ms)", 3.9
    )
    left, right = figure.subplots(1, 2)
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
            not_available(
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
    figure, axes = grid_figure("Per-batch wait: the loop's wait for its next batch (ms)", rows)
    for ax, run, steps in panels(axes, rows, "steps", "steps"):
        warm_steps = steps[steps["warmup"].astype(bool)]
        if not warm_steps.empty:
            ax.axvspan(-0.5, warm_steps["step"].max() + 0.5, color=WARMUP_COLOR, lw=0, zorder=0)
        for rank, part in steps.groupby("rank"):
            name = "wait per batch" if steps["rank"].nunique() == 1 else f"rank {rank}"
            color = run.color if rank == 0 else PALETTE_GPU[int(rank) % len(PALETTE_GPU)]
            draw_line(ax, part["step"], part["wait_s"] * 1000, color=color, label=name, width=1.0)
        for name, style in (("p50", "--"), ("p99", ":")):
            value = run.value(f"batch_wait_{name}_ms")
            if value is not None:
                ax.axhline(value, color=INK, ls=style, lw=1.0, label=f"{name}: {value:.1f} ms")
        _measured_scale(ax, steps)
        ax.set_xlabel("training step")
        ax.set_ylabel("wait for the batch (ms)")
        warm = Patch(color=WARMUP_COLOR, label="warm-up steps") if len(warm_steps) else None
        panel_legend(ax, [warm])
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
