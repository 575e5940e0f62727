"""A run's summary as the run prints it: the headline numbers, the measured window, the
storage's own view (the mount, its disk or NFS figures, the server's), the cross-checks and the
thresholds, a line each. Pure: ``summary.json``'s model in, text out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.results.summary_file import SummaryFile
from harness.text import visible

SHOWN_METRICS = (
    "accelerators",
    "samples_per_s",
    "busy_pct",
    "busy_pct_min",
    "data_wait_pct",
    "barrier_pct",
    "read_MBps",
    "requested_MBps",
    "consumed_MBps",
    "fetch_latency_p50_ms",
    "fetch_latency_p99_ms",
    "batch_wait_p50_ms",
    "cpu_pct",
    "pipeline_cpu_pct",
    "loss_first",
    "loss_last",
    "miou",
    "miou_chance",
    "expansion",
)


def summary_lines(summary: SummaryFile, folder: Path) -> list[str]:
    """The headline numbers, the cross-checks and the thresholds, a line each (what a run
    prints)."""
    metrics = summary.metrics
    status = "complete" if summary.complete else f"INCOMPLETE ({summary.reason})"
    lines = [f"{summary.scenario}: {status} -> {folder}"]
    shown = [*SHOWN_METRICS, *sorted(k for k in metrics if k.startswith("gpu_util_pct["))]
    for name in shown:
        entry = metrics.get(name)
        if entry is None or entry.value is None:
            continue
        lines.append(f"  {name:24s} {entry.value:12.3f} {entry.unit}")
    lines.extend(storage_lines(summary))
    lines.extend(window_lines(summary.window))
    for check in summary.cross_checks:
        lines.append(f"  check: {check['name']}: {check['verdict']}")
    for verdict in summary.thresholds:
        state = (
            verdict.reason or {True: "pass", False: "FAIL", None: "not measured"}[verdict.passed]
        )
        lines.append(f"  threshold {verdict.threshold} {verdict.limit}: {state}")
    lines.extend(f"  warning: {warning}" for warning in summary.warnings)
    return [visible(line) for line in lines]  # names and file paths are the user's text


def window_lines(window: dict[str, Any] | None) -> list[str]:
    """The measured window's samples: fetched, consumed, and in flight at its edges."""
    if not window:
        return []
    measured = window["measured"]

    def count(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return "?"
        size = "" if entry["bytes"] is None else f" ({entry['bytes'] / 1e6:.1f} MB)"
        return f"{entry['samples']}{size}"

    end = measured["in_flight_at_end"] if window.get("in_flight_known") else None
    after = "" if window.get("after_fill") else f", began before {window['fill_batches']} batches"
    return [
        f"  window: {measured['seconds']:.1f} s after {window['fill']['seconds']:.1f} s of "
        f"fill{after}; fetched {count(measured['fetched'])}, consumed "
        f"{count(measured['consumed'])}; in flight {count(measured['in_flight_at_start'])} at "
        f"the start, {count(end)} at the end"
    ]


# (metric, label as iostat / nfsiostat print it, format) for storage_lines
DISK_FIGURES = (
    ("disk_r_per_s", "r/s", "{:.1f}"),
    ("disk_rKiB_per_s", "rkB/s", "{:.0f} KiB/s"),
    ("disk_rareq_KiB", "rareq-sz", "{:.1f} KiB"),
    ("disk_r_await_ms", "r_await", "{:.2f} ms"),
    ("disk_aqu_sz", "aqu-sz", "{:.2f}"),
    ("disk_util_pct", "%util", "{:.1f} %"),
)
NFS_FIGURES = (
    ("nfs_read_ops_per_s", "READ ops/s", "{:.1f}"),
    ("nfs_read_MBps", "read", "{:.1f} MB/s"),
    ("nfs_read_rtt_ms", "avg RTT", "{:.2f} ms"),
    ("nfs_read_exe_ms", "avg exe", "{:.2f} ms"),
    ("nfs_read_retrans", "retrans", "{:.0f}"),
)


def mount_lines(summary: SummaryFile) -> list[str]:
    """The mount the run read, when its bytes are not a local block device's: its type, who
    counted them, and the link's figures."""
    storage = summary.storage or []
    if not storage or storage[-1].get("counted_by") == "block":
        return []
    root = storage[-1]  # the folder the run read: its frame cache when it has one
    read, link = summary.value("read_MBps"), summary.value("link_rx_MBps")
    parts = [f"read {read:.2f} MB/s" if read is not None else "read not measured"]
    parts.append(f"counted by {root.get('counted_by_source', root.get('counted_by'))}")
    if root.get("interface"):
        received = "not measured" if link is None else f"{link:.2f} MB/s"
        parts.append(f"link {root['interface']} received {received}")
    elif root.get("note"):
        parts.append(f"link: {root['note']}")
    return [
        f"  mount {root.get('mount_point')} ({root.get('fs_type')}, {root.get('source')}): "
        + "; ".join(parts)
    ]


# The storage server's own view (the prometheus collector): (metric, label, format)
SERVER_FIGURES = (
    ("server_disk_read_MBps", "disk read", "{:.1f} MB/s"),
    ("server_disk_util_pct", "util", "{:.1f} %"),
    ("server_net_transmit_MBps", "net transmit", "{:.1f} MB/s"),
    ("server_cpu_busy_pct", "cpu", "{:.1f} %"),
)


def storage_lines(summary: SummaryFile) -> list[str]:
    """The storage's own view of the measured window, as iostat -x and nfsiostat would print it:
    one line for the dataset's block device, one for its NFS mount, one for the server's view
    (its Prometheus endpoint; each only when measured)."""
    lines = mount_lines(summary)
    device = summary.collectors.io_device or "all disks"
    for title, figures in ((f"disk {device}", DISK_FIGURES), ("nfs mount", NFS_FIGURES)):
        shown = [
            f"{label} {form.format(value)}"
            for name, label, form in figures
            if (value := summary.value(name)) is not None
        ]
        if shown:
            lines.append(f"  {title}: {', '.join(shown)}")
    server = [
        f"{label} {form.format(value)}"
        for name, label, form in SERVER_FIGURES
        if (value := summary.value(name)) is not None
    ]
    if server:
        lines.append(
            f"  server ({summary.collectors.server_view or 'prometheus'}): {', '.join(server)}"
        )
    return lines
