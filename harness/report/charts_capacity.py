"""The capacity chart: one scenario's search as curves against the number of emulated
accelerators, the study's Figure 7 (utilisation) asked as "how many does this storage feed".

Three panels share the x axis (accelerators, log 2, as the search doubles them): the mean busy %
of the accelerators and the least busy one, with the search's thresholds and the answer marked;
the storage read rate with the read ceiling measured before the search (and the rate the pipeline
asked for: the difference came from the page cache); the client's CPU as a share of the cores it
had. A count probed more than once (``--repeat``) is drawn at the median of its probes, the value
the search judged it on, with every probe as a dot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from harness.capacity import CPU_SHARE, Probe, Search
from harness.report.capacity_data import CapacityProbe, CapacityResults, CapacityScenario
from harness.report.charts import INK, MUTED, plain, titled_figure

HEIGHT_IN = 4.4
MEAN_COLOR = "#0072B2"
LEAST_COLOR = "#E69F00"
THRESHOLD_COLOR = "#b3261e"
ANSWER_COLOR = "#17803d"
CEILING_COLOR = "#444444"
ASKED_COLOR = "#999999"

Getter = Callable[[CapacityProbe], float | None]


def count_passes(result: CapacityResults, entry: CapacityScenario) -> dict[int, bool]:
    """Each probed count's verdict as the search judged it: on the medians of its probes
    (harness.capacity.Search); from the probes' own verdicts when the thresholds are unknown."""
    if result.min_busy is None or result.min_busy_each is None:
        return {
            n: sum(p.verdict == "pass" for p in entry.probes if p.accelerators == n)
            > sum(p.verdict == "fail" for p in entry.probes if p.accelerators == n)
            for n in entry.counts()
        }
    search = Search(result.min_busy, result.min_busy_each)
    for p in entry.probes:
        search.record(Probe(p.accelerators, p.busy_pct, p.busy_pct_min, p.complete))
    return {n: search.passes(n) for n in entry.counts()}


def cpu_share(probe: CapacityProbe, cores: int | None) -> float | None:
    """The run's processes' CPU as a share of the client's cores (%); None when unknown."""
    cpu = probe.metric("cpu_pct")
    return None if cpu is None or not cores else cpu / cores


def capacity_chart(result: CapacityResults, entry: CapacityScenario) -> Figure:
    """One scenario's search: busy %, read MB/s and client CPU % against accelerators."""
    figure = titled_figure(
        plain(
            f"Capacity of {entry.scenario}: emulated {entry.device or 'unknown'}-class "
            f"accelerators ({entry.profile})"
        ),
        HEIGHT_IN,
    )
    axes = figure.subplots(1, 3, sharex=True)
    counts = entry.counts()
    if not counts:
        for ax in axes:
            ax.set_axis_off()
        axes[1].text(
            0.5, 0.5, "no probe finished", ha="center", va="center", color=MUTED, fontsize=10
        )
        return figure
    passes = count_passes(result, entry)
    _busy_panel(axes[0], result, entry, counts, passes)
    _read_panel(axes[1], entry, counts)
    _cpu_panel(axes[2], entry, counts)
    for ax in axes:
        _accelerator_axis(ax, counts, entry.max_accelerators)
        if entry.clients > 1:
            ax.set_xlabel(f"emulated accelerators per client ({entry.clients} clients)")
    return figure


def _series(ax: Any, entry: CapacityScenario, counts: list[int], get: Getter, **look: Any) -> None:
    """A line through the median at each count; a dot per probe where a count was repeated."""
    points = [(n, entry.median(n, get)) for n in counts]
    points = [(n, v) for n, v in points if v is not None]
    if points:
        ax.plot([n for n, _ in points], [v for _, v in points], **look)
    repeated = [
        p for p in entry.probes if sum(q.accelerators == p.accelerators for q in entry.probes) > 1
    ]
    dots = [(p.accelerators, get(p)) for p in repeated if get(p) is not None]
    if dots:
        ax.scatter(
            [n for n, _ in dots],
            [v for _, v in dots],
            s=10,
            color=look.get("color"),
            alpha=0.45,
            lw=0,
            zorder=2,
        )


def _busy_panel(
    ax: Any,
    result: CapacityResults,
    entry: CapacityScenario,
    counts: list[int],
    passes: dict[int, bool],
) -> None:
    ax.set_title("Busy % of the emulated accelerators", loc="left", fontsize=9, color=INK)
    _series(ax, entry, counts, lambda p: p.busy_pct, color=MEAN_COLOR, lw=1.6, label="mean busy")
    _series(
        ax,
        entry,
        counts,
        lambda p: p.busy_pct_min,
        color=LEAST_COLOR,
        lw=1.3,
        ls="--",
        label="least busy accelerator",
    )
    for n in counts:  # the verdict of each count: filled passes, hollow fails
        value = entry.median(n, lambda p: p.busy_pct)
        if value is None:
            continue
        ax.scatter(
            [n],
            [value],
            s=34,
            zorder=3,
            color=MEAN_COLOR if passes[n] else "white",
            edgecolors=MEAN_COLOR,
            linewidths=1.4,
        )
    ax.scatter([], [], s=34, color=MEAN_COLOR, label="passes")
    ax.scatter([], [], s=34, color="white", edgecolors=MEAN_COLOR, label="fails")
    values = [v for p in entry.probes for v in (p.busy_pct, p.busy_pct_min) if v is not None]
    if result.min_busy is not None:
        ax.axhline(
            result.min_busy,
            color=THRESHOLD_COLOR,
            lw=1.1,
            ls="--",
            label=f"--min-busy {result.min_busy:g} %",
        )
        values.append(result.min_busy)
    if result.min_busy_each is not None:
        ax.axhline(
            result.min_busy_each,
            color=THRESHOLD_COLOR,
            lw=1.0,
            ls=":",
            label=f"--min-busy-each {result.min_busy_each:g} %",
        )
        values.append(result.min_busy_each)
    low = max(0.0, (min(values, default=0.0) - 8) // 10 * 10)
    ax.set_ylim(low, 101)
    ax.set_ylabel("busy: compute time / wall time (%)")
    _answer(ax, entry)
    _legend(ax, ncols=2)


def _answer(ax: Any, entry: CapacityScenario) -> None:
    """The answer marked: a green line at the count (labelled "at least" when capped), or a
    note in the panel when there is none."""
    n = entry.max_accelerators
    if n is None or n == 0:
        text = "no answer: no probe finished" if n is None else "answer: 0 (one already fails)"
        ax.text(
            0.98,
            0.97,
            text,
            transform=ax.transAxes,
            ha="right",
            va="top",
            color=ANSWER_COLOR,
            fontsize=8,
            weight="bold",
        )
        return
    ax.axvline(n, color=ANSWER_COLOR, lw=2.2, alpha=0.5, zorder=1)
    label = f"answer: {'at least ' if entry.capped else ''}{n}"
    ax.annotate(
        label,
        (n, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -3),
        textcoords="offset points",
        ha="left",
        va="top",
        color=ANSWER_COLOR,
        fontsize=8,
        weight="bold",
    )


def _read_panel(ax: Any, entry: CapacityScenario, counts: list[int]) -> None:
    ax.set_title("Storage read rate", loc="left", fontsize=9, color=INK)
    _series(
        ax,
        entry,
        counts,
        lambda p: p.metric("read_MBps"),
        color=MEAN_COLOR,
        lw=1.6,
        marker="o",
        ms=4,
        label="read from storage",
    )
    _series(
        ax,
        entry,
        counts,
        lambda p: p.metric("requested_MBps"),
        color=ASKED_COLOR,
        lw=1.2,
        ls=":",
        marker=".",
        label="asked for by the pipeline",
    )
    values = [
        v
        for p in entry.probes
        for v in (p.metric("read_MBps"), p.metric("requested_MBps"))
        if v is not None
    ]
    if entry.ceiling_MBps is not None:
        ax.axhline(
            entry.ceiling_MBps,
            color=CEILING_COLOR,
            lw=1.3,
            ls="--",
            label=f"read ceiling {entry.ceiling_MBps:.1f} MB/s",
        )
        values.append(entry.ceiling_MBps)
    ax.set_ylim(0, max(values, default=1.0) * 1.15 or 1.0)
    ax.set_ylabel("MB/s (10^6 bytes per second)")
    _legend(ax)


def _cpu_panel(ax: Any, entry: CapacityScenario, counts: list[int]) -> None:
    cores = entry.client_cores
    ax.set_title("Client CPU", loc="left", fontsize=9, color=INK)
    if cores:
        get: Getter = lambda p: cpu_share(p, cores)  # noqa: E731
        ylabel = f"CPU of the run (% of the {cores} cores available)"
        _series(
            ax,
            entry,
            counts,
            get,
            color=MEAN_COLOR,
            lw=1.6,
            marker="o",
            ms=4,
            label="the run's processes",
        )
        ax.axhline(100, color=CEILING_COLOR, lw=1.3, ls="--", label=f"all {cores} cores busy")
        ax.axhline(
            100 * CPU_SHARE,
            color=THRESHOLD_COLOR,
            lw=1.0,
            ls=":",
            label=f"CPU limiter ({100 * CPU_SHARE:.0f} %)",
        )
        ax.set_ylim(0, 105)
    else:
        ylabel = "CPU of the run (% of one core; cores unknown)"
        _series(
            ax,
            entry,
            counts,
            lambda p: p.metric("cpu_pct"),
            color=MEAN_COLOR,
            lw=1.6,
            marker="o",
            ms=4,
            label="the run's processes",
        )
        ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    _legend(ax)


def _legend(ax: Any, ncols: int = 1) -> None:
    """The panel's legend under its axis label, where it hides no point."""
    ax.legend(
        loc="upper left", bbox_to_anchor=(0.0, -0.2), ncols=ncols, fontsize=7, borderaxespad=0
    )


def _spread(candidates: list[int], min_ratio: float = 1.4) -> list[int]:
    """Tick positions taken in order of importance, each kept only where it is at least
    ``min_ratio`` away (on the log axis) from those already kept: labels never collide."""
    kept: list[int] = []
    for value in candidates:
        if all(max(value, k) / min(value, k) >= min_ratio for k in kept):
            kept.append(value)
    return sorted(kept)


def _accelerator_axis(ax: Any, counts: list[int], answer: int | None) -> None:
    """Accelerators on a log-2 axis (the search doubles them), ticks at powers of two, the
    answer and the other counts probed where there is room, as whole numbers."""
    ax.set_xscale("log", base=2)
    top = max(counts)
    powers = [2**k for k in range(top.bit_length() + 1) if 2**k <= top]
    ticks = _spread(([answer] if answer else []) + powers + counts)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlim(min(counts) / 1.35, top * 1.35)
    ax.set_xlabel("emulated accelerators")
