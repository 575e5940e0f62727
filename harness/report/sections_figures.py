"""The report's sections built around charts: the study's Figure 7, the series over time (GPU,
storage reads, CPU), fetch latency and batch wait, the stall breakdown, the storage footprint and
the training loss.

Per-run charts (a panel per run) are cut into figures of :data:`ROWS_PER_FIGURE` rows, each a
chart of its own ("part 2 of 3"), so that one figure fits an A4 page and a screen.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from harness.report import charts_latency, charts_scenarios, charts_time
from harness.report.charts import measured_latencies
from harness.report.content import Block, Chart, Section, Table, fmt, num_style, scaled_bytes
from harness.report.runs import Run, by_category, grid

ROWS_PER_FIGURE = 3  # per-run panels per figure: one A4 page in the PDF, one screen in the HTML

PanelChart = Callable[[list[list[Run | None]]], Figure]  # a grid of runs in, a figure out


def figure7_section(runs: list[Run]) -> Section:
    chart = Chart(
        "fig-utilisation",
        "Average utilisation per scenario",
        charts_scenarios.utilisation_bars(runs),
        "The study (WP-7300) measured 97.3 % average GPU utilisation training from the frame "
        "cache and 58.1 % decoding frames during training (dashed lines). Where no GPU was "
        "sampled, the bar is the loop's busy % (compute time / wall time, hatched), the "
        "measure MLPerf Storage calls accelerator utilisation.",
    )
    return Section(
        "figure-7",
        "Utilisation: the study's Figure 7",
        "Can this storage keep the accelerators busy, and how much does each way of feeding "
        "them cost in utilisation?",
        [chart],
    )


def _grid_charts(key: str, title: str, runs: list[Run], build: PanelChart) -> list[Block]:
    """A per-run chart cut into figures of at most ROWS_PER_FIGURE rows of panels."""
    rows = grid(by_category(runs))
    parts = [rows[i : i + ROWS_PER_FIGURE] for i in range(0, len(rows), ROWS_PER_FIGURE)]
    out: list[Block] = []
    for index, part in enumerate(parts, start=1):
        suffix = "" if len(parts) == 1 else f" (part {index} of {len(parts)})"
        chart_id = f"fig-{key}" if index == 1 else f"fig-{key}-{index}"
        out.append(Chart(chart_id, title + suffix, build(part)))
    return out


def _grid_section(key: str, title: str, intro: str, runs: list[Run], build: PanelChart) -> Section:
    return Section(key, title, intro, _grid_charts(key, title, runs, build))


def gpu_section(runs: list[Run]) -> Section:
    title = "GPU utilisation over time"
    intro = "NVML utilisation of every GPU, sampled at the collectors' rate. Grey: warm-up."
    if any(charts_time.has_gpu_series(run) for run in runs):
        return _grid_section("gpu-timeline", title, intro, runs, charts_time.gpu_timeline)
    figure = charts_time.gpu_timeline(grid(by_category(runs)))  # one compact chart saying why
    return Section("gpu-timeline", title, intro, [Chart("fig-gpu-timeline", title, figure)])


def read_section(runs: list[Run]) -> Section:
    title = "Storage read throughput"
    blocks = _grid_charts("read-throughput", title, runs, charts_time.read_throughput)
    return Section(
        "read-throughput",
        title,
        "The storage's own view first (the dataset's device as iostat -x reports it; an NFS "
        "mount's READ calls as nfsiostat does), then what the run's processes read per second "
        "(/proc/<pid>/io read_bytes; dashed: the mean; dotted: the rate the pipeline asked for, "
        "far above the read rate when the page cache served the data).",
        [*storage_tables(runs), *blocks],
    )


def server_section(runs: list[Run]) -> Section | None:
    """The storage server's own view (the prometheus collector), when some run scraped one."""
    scraped = [run for run in runs if charts_time.has_server_series(run)]
    if not scraped:
        return None
    names = ", ".join(dict.fromkeys(charts_time.server_name(run) for run in scraped))
    title = f"The server's view: {names}"
    return _grid_section(
        "server-view",
        title,
        "What the storage server's Prometheus endpoint (node_exporter, NetApp Harvest) said "
        "during the run: its disks' reads and its network transmit, beside what the client's "
        "processes read. Reads the client made that the server's disks did not see came from "
        "the server's cache (or the client's). Where server and client share one machine, as "
        "in a lab on one host, the server's disks are the client's disks.",
        runs,
        charts_time.server_view,
    )


# metric, column, unit given to fmt
DEVICE_COLUMNS = (
    ("disk_r_per_s", "r/s", ""),
    ("disk_rKiB_per_s", "rkB/s (KiB/s)", ""),
    ("disk_rareq_KiB", "rareq-sz (KiB)", ""),
    ("disk_r_await_ms", "r_await (ms)", "ms"),
    ("disk_aqu_sz", "aqu-sz", ""),
    ("disk_util_pct", "%util", "%"),
)
NFS_COLUMNS = (
    ("nfs_read_ops_per_s", "READ ops/s", ""),
    ("nfs_read_MBps", "read (MB/s)", ""),
    ("nfs_read_rtt_ms", "avg RTT (ms)", "ms"),
    ("nfs_read_exe_ms", "avg exe (ms)", "ms"),
    ("nfs_read_retrans", "retrans", "count"),
)


def storage_tables(runs: list[Run]) -> list[Block]:
    """The dataset's device (iostat -x's read figures) and its NFS mount (nfsiostat's), a row
    per run, over the measured window; a table only when some run measured it."""
    ordered = by_category(runs)
    tables: list[Block] = []
    for key, title, columns, caption in (
        (
            "table-device",
            "The dataset's block device, as iostat -x reports it",
            DEVICE_COLUMNS,
            "From /proc/diskstats over the measured window, computed as iostat -x does (its kB "
            "are KiB). %util near 100 and a growing aqu-sz mean the device was saturated; "
            "r_await is the time a read spent in the device's queue and in service.",
        ),
        (
            "table-nfs",
            "The dataset's NFS mount: READ calls",
            NFS_COLUMNS,
            "From /proc/self/mountstats over the measured window, as nfsiostat reports it: "
            "RTT is the network and the server, execute time adds the client's queueing; "
            "retransmissions mean lost or late replies.",
        ),
    ):
        if not any(run.value(name) is not None for run in ordered for name, _, _ in columns):
            continue
        rows, styles = [], []
        for run in ordered:
            values = [run.value(name) for name, _, _ in columns]
            device = (run.summary and run.summary.collectors.io_device) or "all disks"
            first = [run.label, device] if key == "table-device" else [run.label]
            rows.append(
                [*first, *(fmt(v, unit) for v, (_, _, unit) in zip(values, columns, strict=True))]
            )
            styles.append(["" for _ in first] + [num_style(v) for v in values])
        header = ["run", "device"] if key == "table-device" else ["run"]
        tables.append(
            Table(key, title, [*header, *(c for _, c, _ in columns)], rows, styles, caption=caption)
        )
    mounts = mount_table(ordered)
    return tables if mounts is None else [mounts, *tables]


def mount_table(runs: list[Run]) -> Table | None:
    """Per run: the mount under the folder it read, its file system, and the source that counted
    its bytes, with the read rate and the link's (a table only when some run read from a mount
    that is not a local block device: the disk table covers those)."""
    rows, styles = [], []
    for run in runs:
        storage = (run.summary and run.summary.storage) or []
        read_root = storage[-1] if storage else None  # the frame cache when there is one
        if read_root is None or read_root.get("counted_by") == "block":
            continue
        values = [run.value(name) for name in ("read_MBps", "link_rx_MBps")]
        link = read_root.get("interface") or "not known"
        rows.append(
            [
                run.label,
                f"{read_root.get('mount_point')} ({read_root.get('role')})",
                str(read_root.get("fs_type")),
                str(read_root.get("counted_by_source", read_root.get("counted_by"))),
                link,
                *(fmt(v, "") for v in values),
            ]
        )
        styles.append(["", "", "", "", "", *(num_style(v) for v in values)])
    if not rows:
        return None
    return Table(
        "table-mount",
        "The mount each run read and who counted its bytes",
        ["run", "mount", "type", "bytes counted by", "link", "read (MB/s)", "link rx (MB/s)"],
        rows,
        styles,
        caption="The per-process read_bytes misses FUSE and some network file systems: on those "
        "the read rate is the pipeline's cache misses (the pages mincore "
        "found absent before the read), and the interface on the route to the server counts "
        "what crossed the link (protocol overhead included). The server's own disks are not "
        "this client's: see the server view where a Prometheus source was scraped.",
    )


def cpu_section(runs: list[Run]) -> Section:
    return _grid_section(
        "cpu",
        "CPU utilisation",
        "The run's processes as a share of all the machine's cores (100 % = every core busy "
        "with this run), and the whole machine's mean core utilisation.",
        runs,
        charts_time.cpu_timeline,
    )


def latency_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for run in by_category(runs):
        count = measured_latencies(run).size
        values = [run.value(f"fetch_latency_{p}_ms") for p in ("p50", "p90", "p99", "p99.9")]
        waits = [run.value(f"batch_wait_{p}_ms") for p in ("p50", "p99")]
        rows.append([run.label, fmt(count, "count"), *[fmt(v, "ms") for v in values + waits]])
        styles.append(["", "num", *[num_style(v) for v in values + waits]])
    table = Table(
        "table-latency",
        "Fetch latency per sample and wait per batch (ms)",
        [
            "run",
            "samples",
            "fetch p50",
            "fetch p90",
            "fetch p99",
            "fetch p99.9",
            "batch wait p50",
            "batch wait p99",
        ],
        rows,
        styles,
        caption="Fetch latency: one sample's read + decode + transform in the worker, over the "
        "samples of the measured steps. Batch wait: the loop's wait for its next batch.",
    )
    blocks: list[Block] = [
        table,
        Chart(
            "fig-fetch-latency",
            "Fetch latency CDF",
            charts_latency.latency_cdf(runs),
            "Left: the share of samples fetched within x ms. Right: the share slower than x, on "
            "a log scale, where the tail (p99, p99.9) can be read off.",
        ),
    ]
    blocks += _grid_charts("batch-wait", "Per-batch wait", runs, charts_latency.batch_wait)
    return Section(
        "latency",
        "Fetch latency and batch wait",
        "How long one sample takes to arrive, and how long the training loop waits for a batch: "
        "the loop only stalls when the workers together fall behind.",
        blocks,
    )


def stall_section(runs: list[Run]) -> Section:
    return Section(
        "stalls",
        "Stall breakdown",
        "Of the measured steps' wall time: the share spent computing (the loop busy %), the share "
        "spent waiting for the next batch, and the rest.",
        [Chart("fig-stall-breakdown", "Stall breakdown", charts_scenarios.stall_breakdown(runs))],
    )


def footprint_section(runs: list[Run]) -> Section:
    ordered = by_category(runs)
    both, unit = scaled_bytes(
        [r.value("storage_bytes") for r in ordered] + [r.value("cache_bytes") for r in ordered]
    )
    stored, cached = both[: len(ordered)], both[len(ordered) :]
    rows, styles = [], []
    for run, dataset, cache in zip(ordered, stored, cached, strict=True):
        value, source = run.utilisation()
        what = "" if value is None else (" GPU" if source == "gpu" else " busy")
        expansion = run.value("expansion")
        rows.append(
            [
                run.label,
                run.category,
                fmt(dataset, unit),
                fmt(cache, unit),
                fmt(expansion, "x"),
                fmt(value, "%") + what,
            ]
        )
        styles.append(["", "", *map(num_style, (dataset, cache, expansion, value))])
    table = Table(
        "table-footprint",
        f"Storage footprint ({unit}) and utilisation",
        [
            "run",
            "experiment",
            f"dataset ({unit})",
            f"frame cache ({unit})",
            "expansion",
            "utilisation (%): GPU, or busy (measured step)",
        ],
        rows,
        styles,
        caption="kB, MB, GB = 10^3, 10^6, 10^9 bytes. Utilisation: NVML GPU where a GPU was "
        "sampled, else the loop's busy % (the measured step's compute / wall, after warm-up; "
        "not DLIO's AU).",
    )
    chart = Chart(
        "fig-footprint",
        "Storage footprint vs utilisation",
        charts_scenarios.footprint(runs),
        "Decoding during training stores only the compressed videos but costs CPU and "
        "utilisation; the frame cache buys utilisation with many times the storage (the study "
        "notes 10× or more).",
    )
    return Section(
        "footprint",
        "Storage footprint and the trade-off",
        "What each way of feeding the GPUs stores, and the utilisation it buys.",
        [chart, table],
    )


def loss_section(runs: list[Run]) -> Section:
    return Section(
        "training",
        "Training loss",
        "Every run trains a real U-Net: the loss falls, and the held-out mIoU beats the score "
        "of always guessing one class.",
        [Chart("fig-loss", "Training loss", charts_scenarios.loss_curves(runs))],
    )
