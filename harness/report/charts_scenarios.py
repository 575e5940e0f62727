"""The report's charts that put every run on one set of axes, in the study's order (cached,
decoded, collage): utilisation per scenario (the study's Figure 7), the stall breakdown, the
storage footprint beside the utilisation it buys, and the training loss.

Utilisation is the mean NVML GPU utilisation where a GPU was sampled; without one the loop's busy
% (compute time / wall time) stands in, drawn hatched and lighter and labelled as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from harness.report.charts import (
    CATEGORY_COLORS,
    INK,
    MUTED,
    TITLE_IN,
    byte_exponent,
    byte_unit,
    draw_line,
    not_available,
    plain,
    titled_figure,
    wrap_label,
)
from harness.report.runs import Run, by_category

# The study's Figure 7 (WP-7300): average GPU utilisation of its two video experiments.
STUDY_CACHED_PCT = 97.3
STUDY_DECODED_PCT = 58.1


def _utilisation_look(source: str) -> dict[str, Any]:
    """A utilisation bar's look: solid for NVML GPU, hatched and lighter for the loop's busy %."""
    gpu = source == "gpu"
    return {"alpha": 0.9 if gpu else 0.6, "hatch": "" if gpu else "///", "edgecolor": "white"}


def _busy_patch() -> Patch:
    """The legend entry of a hatched busy % bar (a fresh artist for each legend)."""
    return Patch(facecolor="white", edgecolor=MUTED, hatch="///", label="loop busy % (no GPU)")


def utilisation_bars(runs: list[Run]) -> Figure:
    """The study's Figure 7: average utilisation per scenario, cached vs decoded (and the
    collage), with the study's 97.3 % and 58.1 % as reference lines. Without a GPU the loop's
    busy % (compute time / wall time) stands in, hatched and labelled as such."""
    ordered = by_category(runs)
    values = [run.utilisation() for run in ordered]
    sources = {source for value, source in values if value is not None}
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
    figure = titled_figure(title, 4.2)
    ax = figure.subplots()
    x = np.arange(len(ordered))
    for i, (run, (value, source)) in enumerate(zip(ordered, values, strict=True)):
        color = CATEGORY_COLORS[run.category]
        if value is None:
            ax.text(i, 2, "not\nmeasured", ha="center", va="bottom", color=MUTED, fontsize=8)
            continue
        ax.bar(i, value, width=0.62, color=color, lw=0.8, **_utilisation_look(source))
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
            wrap_label(run.label, max(12, 120 // max(len(ordered), 1)))
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
        handles.append(_busy_patch())
    handles += references
    ax.legend(handles=handles, loc="lower left", ncols=len(handles), bbox_to_anchor=(0.0, 1.0))
    return figure


def stall_breakdown(runs: list[Run]) -> Figure:
    """Where the wall time of the measured steps went: computing, waiting for data, other."""
    ordered = by_category(runs)
    figure = titled_figure(
        "Stall breakdown: share of the measured steps' wall time (%)",
        TITLE_IN + 0.9 + 0.55 * len(ordered),
    )
    ax = figure.subplots()
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
            wrap_label(run.label, 40) + ("" if run.complete else " [INCOMPLETE]") + "\n"
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


def footprint(runs: list[Run]) -> Figure:
    """The study's trade-off: what each way of feeding stores (compressed videos, frame cache,
    the expansion between them) beside the utilisation it buys."""
    ordered = [run for run in by_category(runs) if run.value("storage_bytes") is not None]
    figure = titled_figure(
        "Storage footprint and the utilisation it buys (the study's trade-off)",
        TITLE_IN + 1.0 + 0.6 * max(len(ordered), 2),
    )
    left, right = figure.subplots(1, 2, width_ratios=(1.5, 1), sharey=True)
    if not ordered:
        for ax in (left, right):
            not_available(ax, "no run recorded its storage footprint")
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
                **_utilisation_look(source),
            )
            name = "GPU" if source == "gpu" else "busy"
            right.text(value + 1, row, f"{value:.1f} % {name}", va="center", fontsize=8)
    labels = [wrap_label(run.label, 34) + f"\n{run.category}" for run in ordered]
    left.set_yticks(y, labels, fontsize=8)
    left.set_xlim(0, largest / divisor * 1.7)
    left.set_xlabel(
        f"bytes on the storage under test ({unit}, 1 {unit} = 10^{byte_exponent(unit)} bytes)"
    )
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
        handles=[Patch(color=MUTED, label="NVML GPU"), _busy_patch()],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=2,
    )
    for ax in (left, right):
        ax.grid(axis="y", visible=False)
    return figure


def loss_curves(runs: list[Run]) -> Figure:
    """Training loss per step (rank 0), the evidence that each run trained for real; the
    legend gives the held-out mIoU against the always-one-class chance level."""
    figure = titled_figure(
        "Training loss per step (cross-entropy): evidence the training was real", 3.6
    )
    ax = figure.subplots()
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
        draw_line(ax, first["step"], first["loss"], color=run.color, label=label)
        drawn += 1
    if not drawn:
        not_available(ax, "no training steps recorded in any run")
        return figure
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure
