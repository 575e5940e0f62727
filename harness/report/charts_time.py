"""The report's charts over time: GPU utilisation, storage read throughput and CPU, one panel per
run (a column per machine, a row per scenario), with the warm-up greyed.

Each line's mean in the legend is the run's summary number; a run without a summary (killed
before writing it) gets the mean of the full series over its measured window instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.charts import (
    INK,
    MUTED,
    PALETTE_GPU,
    TITLE_IN,
    combine_ranks,
    draw_line,
    grid_figure,
    not_available,
    panel_legend,
    panels,
    time_axis,
    titled_figure,
    warmup_band,
)
from harness.report.runs import Run
from harness.stats import window_mean


def has_gpu_series(run: Run) -> bool:
    frame = run.table("series_gpu")
    return frame is not None and not frame.empty and "gpu_util_pct" in frame.columns


def _window(run: Run) -> tuple[float, float] | None:
    from harness.summary import measured_window

    steps = run.table("steps")
    return None if steps is None or steps.empty else measured_window(steps)


def _mean(
    summary_value: float | None,
    window: tuple[float, float] | None,
    t: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
) -> float | None:
    """The summary's mean where it has one, else the series' own over the measured window."""
    if summary_value is not None or window is None:
        return summary_value
    return window_mean(t, y, *window)


def gpu_timeline(rows: list[list[Run | None]]) -> Figure:
    """Per-GPU NVML utilisation over time, one panel per run; a panel says why when no GPU."""
    title = "GPU utilisation over time, per GPU (NVML, %)"
    present = [run for row in rows for run in row if run is not None]
    if not any(has_gpu_series(run) for run in present):
        figure = titled_figure(title, TITLE_IN + 0.5 + 0.32 * len(present))
        ax = figure.subplots()
        lines = [f"{run.label}: {run.unavailable('series_gpu')}" for run in present]
        not_available(ax, "No GPU was sampled in these runs.\n\n" + "\n".join(lines), wrap=160)
        return figure
    figure, axes = grid_figure(title, rows)
    for ax, run, frame in panels(axes, rows, "series_gpu", "GPU series", usable=has_gpu_series):
        warm = warmup_band(ax, run)
        groups = list(frame.groupby(["rank", "gpu"] if "rank" in frame else ["gpu"]))
        window = _window(run)
        for index, (key, part) in enumerate(groups):
            rank, gpu = key if len(key) == 2 else (0, key[0])
            summary_mean = run.value(f"gpu_util_pct[{gpu}]") if rank == 0 else None
            mean = _mean(summary_mean, window, part["t"], part["gpu_util_pct"])
            name = f"GPU {gpu}" if rank == 0 else f"rank {rank} GPU {gpu}"
            mean_text = "" if mean is None else f": mean {mean:.1f} %"
            color = PALETTE_GPU[index % len(PALETTE_GPU)]
            draw_line(ax, part["t"], part["gpu_util_pct"], color=color, label=name + mean_text)
        ax.set_ylim(0, 105)
        ax.set_ylabel("GPU utilisation (%)")
        time_axis(ax)
        panel_legend(ax, [warm], ncols=1 if len(groups) < 9 else 2)
    return figure


def read_throughput(rows: list[list[Run | None]]) -> Figure:
    """Bytes the run's processes read from storage per second, over time, with the mean over
    the measured window (the summary's number) and what the pipeline asked for."""
    figure, axes = grid_figure(
        "Storage read throughput over time (MB/s, 1 MB = 10^6 bytes; /proc read_bytes of the "
        "run's processes)",
        rows,
    )
    for ax, run, frame in panels(axes, rows, "series_io", "I/O series"):
        warm = warmup_band(ax, run)
        t, y = combine_ranks(frame, "read_MBps", run.rate_hz, "sum")
        draw_line(ax, t, y, color=run.color, label="read from storage")
        mean = _mean(run.value("read_MBps"), _window(run), t, y)
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
        time_axis(ax)
        panel_legend(ax, [warm])
    return figure


def has_server_series(run: Run) -> bool:
    frame = run.table("series_prometheus")
    return frame is not None and len(frame) >= 2


def server_name(run: Run) -> str:
    """Whose view the run's prometheus series is (collectors.prometheus.name)."""
    return (run.summary and run.summary.collectors.server_view) or "server"


def server_view(rows: list[list[Run | None]]) -> Figure:
    """The storage server's own view over time (its Prometheus endpoint): its disks' reads and
    its network transmit, beside what the client's processes read (the io collector)."""
    from harness.collect.prometheus import DISK_READ_BYTES, NET_TRANSMIT_BYTES, summed_rate

    figure, axes = grid_figure(
        "The server's view over time (MB/s, 1 MB = 10^6 bytes): its disk reads and network "
        "transmit beside the client's reads",
        rows,
    )
    for ax, run, frame in panels(
        axes, rows, "series_prometheus", "server series", usable=has_server_series
    ):
        warm = warmup_band(ax, run)
        name = server_name(run)
        for counter, metric_name, label, color in (
            (DISK_READ_BYTES, "server_disk_read_MBps", f"{name}: disk read", PALETTE_GPU[0]),
            (
                NET_TRANSMIT_BYTES,
                "server_net_transmit_MBps",
                f"{name}: net transmit",
                PALETTE_GPU[1],
            ),
        ):
            t, y = summed_rate(frame, counter)
            if t.size:
                mean = run.value(metric_name)
                text = "" if mean is None else f": mean {mean:.2f} MB/s"
                draw_line(ax, t, y / 1e6, color=color, label=label + text)
        client = run.table("series_io")
        if client is not None and not client.empty:
            t, y = combine_ranks(client, "read_MBps", run.rate_hz, "sum")
            mean = run.value("read_MBps")
            text = "" if mean is None else f": mean {mean:.2f} MB/s"
            draw_line(ax, t, y, color=MUTED, label="client: read from storage" + text, width=0.9)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("MB/s")
        time_axis(ax)
        panel_legend(ax, [warm])
    return figure


def cpu_timeline(rows: list[list[Run | None]]) -> Figure:
    """CPU over time: the run's processes (as % of all the machine's cores) and the whole
    machine (mean of its cores)."""
    figure, axes = grid_figure("CPU utilisation over time (% of all cores)", rows)
    for ax, run, frame in panels(axes, rows, "series_cpu", "CPU series"):
        warm = warmup_band(ax, run)
        cores = _cores(run, frame)
        t, tree = combine_ranks(frame, "cpu_pct", run.rate_hz, "sum")
        tree_mean = run.value("cpu_pct")
        label = f"the run's processes ({cores} cores = 100 %)"
        if tree_mean is not None:
            label += f": mean {tree_mean / cores:.1f} %"
        draw_line(ax, t, tree / cores, color=run.color, label=label)
        if "cpu_cores_pct" in frame.columns:
            first = frame[frame["rank"] == frame["rank"].min()] if "rank" in frame else frame
            machine_mean = run.value("cpu_cores_pct")
            label = "whole machine" + (
                "" if machine_mean is None else f": mean {machine_mean:.1f} %"
            )
            draw_line(ax, first["t"], first["cpu_cores_pct"], color=MUTED, label=label, width=0.9)
        ax.set_ylim(0, 105)
        ax.set_ylabel("CPU (% of all cores)")
        time_axis(ax)
        panel_legend(ax, [warm])
    return figure


def _cores(run: Run, frame: pd.DataFrame) -> int:
    """Logical cores of the run's machine: the per-core columns sampled, else the manifest's."""
    per_core = [c for c in frame.columns if c.startswith("cpu_core_pct[")]
    if per_core:
        return len(per_core)
    cores = run.hardware.get("cpu_logical_cores")
    return cores if isinstance(cores, int) and cores > 0 else 1
