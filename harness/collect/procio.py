"""Bytes the run reads: its process tree (/proc/<pid>/io) and the dataset's disk (/proc/diskstats).

``read_bytes`` is what the tree made the block layer fetch, page-ins of mmapped files included
(page-cache hits are not in it); ``rchar`` is every byte returned by read()-like calls, cached
or not (mmap access is not in it). For a reader using read(), rchar - read_bytes is what the
page cache served. See proctree for how members that exit are counted.

The device is the block device holding the dataset (``st_dev`` of the dataset path, or of its
nearest existing parent, matched to a /proc/diskstats line; for filesystems whose st_dev is not
a block device, such as btrfs, the mount's source device). A dataset on NFS, tmpfs, overlay or
another filesystem with no local block device has ``device`` None, ``device_note`` says why, and
the device columns hold the total of all real (non-virtual) disks instead.

For that device it also keeps /proc/diskstats' counters, from which the summary gives iostat
-x's read figures over the measured window (r/s, rkB/s in KiB, rareq-sz, r_await, aqu-sz, %util:
see diskstats). For a dataset on NFS it keeps the mount's READ counters from
/proc/self/mountstats (ops, RTT, execute time, retransmissions, bytes from the server: see
mountstats), the storage's own view of the reads.

Frame columns: t, read_bytes, rchar (tree, cumulative since the first sample), read_MBps,
rchar_MBps (from the previous sample), device_read_bytes (cumulative), device_read_MBps, procs
(live tree members), then the device's counters ``device_<name>`` (cumulative since the first
sample; names in diskstats.COUNTER_NAMES) and, on NFS, ``nfs_<name>`` (mountstats.COUNTER_NAMES).
MB = 10**6 bytes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from harness.collect import CollectorContext, diskstats, mountstats
from harness.collect.misses import MissCounter
from harness.collect.mounts import StorageMount, interface_bytes, locate, locate_device
from harness.collect.proctree import ProcessTree, TreeCounters
from harness.collect.sampler import (
    Collector,
    ProcFile,
    per_sample_rate,
    read_small,
    window_delta,
)
from harness.env import existing_parent, find_mount
from harness.stats import counter_rate, metric

SECTOR_BYTES = diskstats.SECTOR_BYTES
MB = 1e6
RAW_COLUMNS = ("t", "read_bytes", "rchar", "device_read_bytes", "procs")
DEVICE_COLUMNS = tuple(f"device_{name}" for name in diskstats.COUNTER_NAMES)
NFS_COLUMNS = tuple(f"nfs_{name}" for name in mountstats.COUNTER_NAMES)
MISS_COLUMNS = ("missed_bytes",)  # the host's cache misses (misses.MissCounter), cumulative
LINK_COLUMNS = ("link_rx_bytes", "link_tx_bytes")  # the interface towards the mount's server
MOUNTSTATS = "/proc/self/mountstats"


def parse_io(data: bytes) -> tuple[int, int]:
    """(read_bytes, rchar) from the text of /proc/<pid>/io."""
    fields = data.split()  # rchar: N wchar: N syscr: N syscw: N read_bytes: N ...
    if fields[0] != b"rchar:" or fields[8] != b"read_bytes:":
        raise ValueError("unexpected layout of /proc/<pid>/io")
    return int(fields[9]), int(fields[1])


def real_disks() -> list[str]:
    """Whole disks that are not virtual (no loop, ram, zram, device-mapper or md devices),
    so that summing them counts every physical read once."""
    try:
        entries = sorted(os.listdir("/sys/block"))
    except OSError:
        return []
    return [
        name
        for name in entries
        if "/devices/virtual/" not in os.path.realpath(os.path.join("/sys/block", name))
    ]


def locate_nfs_mount(dataset_path: Path) -> str | None:
    """The mount point of the NFS mount holding the dataset, or None when it is not on NFS."""
    try:
        mount = find_mount(existing_parent(dataset_path), Path("/proc/self/mountinfo").read_text())
    except OSError:
        return None
    if mount is None or mount.fs_type not in mountstats.NFS_TYPES:
        return None
    return mount.mount_point


class IoCollector(Collector):
    name = "io"

    def __init__(
        self,
        *,
        rate_hz: float,
        t0: float,
        root_pid: int,
        dataset_path: Path,
        tree: ProcessTree | None = None,
        nfs_mount: str | None = None,
        mountstats_path: str = MOUNTSTATS,
        role: str = "dataset",
        missed_counter: Path | None = None,
        host_counters: bool = True,
        mount: StorageMount | None = None,
    ) -> None:
        """``nfs_mount``: the NFS mount point to follow (found from the dataset path when None);
        ``mountstats_path``: where its counters are read (tests give a captured copy);
        ``missed_counter``: the host's cache-miss counter; ``host_counters``: this process
        reports the host's figures (the miss counter, the link); ``mount``: the mount under the
        dataset path and who counts its bytes (found when None)."""
        self.mount = mount or locate(Path(dataset_path), role)
        self.nfs_mount = nfs_mount or locate_nfs_mount(Path(dataset_path))
        self._mountstats_path = mountstats_path
        self.host_counters = host_counters
        # The host's counters, sampled by one process per host only (the others' would count
        # the host again when ranks are summed).
        self._misses = MissCounter(missed_counter) if missed_counter and host_counters else None
        self._miss_baseline: int | None = None
        self._link_baseline: tuple[int, int] | None = None
        nfs_columns = NFS_COLUMNS if self.nfs_mount else ()
        miss_columns = MISS_COLUMNS if self._misses is not None else ()
        link_columns = LINK_COLUMNS if self.mount.interface and host_counters else ()
        super().__init__(
            rate_hz=rate_hz,
            t0=t0,
            columns=(
                *RAW_COLUMNS,
                *DEVICE_COLUMNS,
                *nfs_columns,
                *miss_columns,
                *link_columns,
            ),
        )
        self.root_pid = root_pid
        self.device: str | None = None
        self.device_note: str | None = None
        self.disks: list[str] = []
        self._diskstats: ProcFile | None = None
        if read_small(f"/proc/{root_pid}/io") is None:
            exists = os.path.exists(f"/proc/{root_pid}")
            self.unavailable = (
                f"cannot read /proc/{root_pid}/io (no task I/O accounting?)"
                if exists
                else f"process {root_pid} not found"
            )
            return
        self.device, self.device_note = locate_device(Path(dataset_path))
        if self.device is None:
            self.disks = real_disks()
            self.device_note = (
                f"{self.device_note}; device_* columns are the total of all real disks "
                f"({', '.join(self.disks) or 'none found'})"
            )
        self._device_key = f" {self.device} ".encode() if self.device else b""
        self._disk_names = {name.encode() for name in self.disks}
        self._tree = tree or ProcessTree(root_pid)
        self._counters = TreeCounters(self._tree, "io", parse_io, counters=2)
        self._device_baseline: diskstats.DiskCounters | None = None
        self._nfs_baseline: mountstats.NfsReadCounters | None = None
        try:
            self._diskstats = ProcFile("/proc/diskstats")
        except OSError:
            self._diskstats = None

    def _device_counters(self) -> diskstats.DiskCounters | None:
        """The dataset's device's counters (or the sum over the real disks), None if unknown."""
        if self._diskstats is None:
            return None
        data = self._diskstats.read()
        if self._device_key:
            at = data.find(self._device_key)
            if at < 0:
                return None
            line_start = data.rfind(b"\n", 0, at) + 1
            return diskstats.parse_line(data[line_start : data.find(b"\n", at)].split())
        total: diskstats.DiskCounters | None = None
        for line in data.splitlines():
            fields = line.split()
            if len(fields) >= 14 and fields[2] in self._disk_names:
                counters = diskstats.parse_line(fields)
                total = counters if total is None else total.plus(counters)
        return total

    def _nfs_counters(self) -> mountstats.NfsReadCounters | None:
        try:
            with open(self._mountstats_path, encoding="utf-8", errors="replace") as stream:
                mount = mountstats.parse_mountstats(stream.read()).get(self.nfs_mount or "")
        except OSError:
            return None
        return None if mount is None else mountstats.NfsReadCounters.of(mount)

    def _sample(self) -> None:
        t = self._now()
        (read_bytes, rchar), _, procs = self._counters.sample()
        counters = self._device_counters()
        if counters is None:
            device = [math.nan] * len(DEVICE_COLUMNS)
            device_bytes = math.nan
        else:
            if self._device_baseline is None:
                self._device_baseline = counters
            grown = counters.minus(self._device_baseline)
            device = [float(getattr(grown, name)) for name in diskstats.COUNTER_NAMES]
            device_bytes = grown.read_sectors * SECTOR_BYTES
        row = [t, read_bytes, rchar, device_bytes, procs, *device]
        if self.nfs_mount:
            nfs = self._nfs_counters()
            if nfs is None:
                row += [math.nan] * len(NFS_COLUMNS)
            else:
                if self._nfs_baseline is None:
                    self._nfs_baseline = nfs
                grown_nfs = nfs.minus(self._nfs_baseline)
                row += [float(getattr(grown_nfs, name)) for name in mountstats.COUNTER_NAMES]
        if self._misses is not None:
            row.append(self._missed_since_start())
        if self.mount.interface and self.host_counters:
            row += self._link_since_start(self.mount.interface)
        self._record(row)

    def _missed_since_start(self) -> float:
        assert self._misses is not None
        value = self._misses.value()
        if value is None:  # not made yet (the pipeline makes it) or gone: not a zero
            return math.nan
        if self._miss_baseline is None:
            self._miss_baseline = value
        return float(value - self._miss_baseline)

    def _link_since_start(self, interface: str) -> list[float]:
        counters = interface_bytes(interface)
        if counters is None:
            return [math.nan, math.nan]
        if self._link_baseline is None:
            self._link_baseline = counters
        return [
            float(counters[0] - self._link_baseline[0]),
            float(counters[1] - self._link_baseline[1]),
        ]

    def _close(self) -> None:
        self._counters.close()
        if self._misses is not None:
            self._misses.close()
        if self._diskstats is not None:
            self._diskstats.close()
            self._diskstats = None

    def _build_frame(self, raw: np.ndarray) -> pd.DataFrame:
        columns = dict(zip(self.columns, raw.T, strict=True))
        t, read_bytes, rchar = columns["t"], columns["read_bytes"], columns["rchar"]
        device_bytes = columns["device_read_bytes"]
        extra = {name: columns[name] for name in self.columns[len(RAW_COLUMNS) :]}
        return pd.DataFrame(
            {
                "t": t,
                "read_bytes": read_bytes,
                "rchar": rchar,
                # the read rate from the source that sees this mount's reads (mounts.py)
                "read_MBps": per_sample_rate(t, self._read_counter(columns)) / MB,
                "process_read_MBps": per_sample_rate(t, read_bytes) / MB,
                "rchar_MBps": per_sample_rate(t, rchar) / MB,
                "device_read_bytes": device_bytes,
                "device_read_MBps": per_sample_rate(t, device_bytes) / MB,
                "procs": columns["procs"],
                **extra,
            }
        )

    def _read_counter(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The cumulative bytes behind the run's read rate: the tree's read_bytes on a block
        device, the bytes from the server on NFS, the host's cache misses elsewhere (NaN in a
        process that does not sample them)."""
        if self.mount.counted_by == "nfs" and "nfs_server_read_bytes" in columns:
            return columns["nfs_server_read_bytes"]
        if self.mount.counted_by == "pipeline":
            return columns.get("missed_bytes", np.full(len(columns["t"]), np.nan))
        return columns["read_bytes"]

    @staticmethod
    def _window(
        frame: pd.DataFrame, prefix: str, names: tuple[str, ...], start: float, end: float
    ) -> tuple[list[int], float] | None:
        """(growth of each counter, seconds) between the first and last samples inside [start,
        end] (the samples stats.counter_rate uses), or None with fewer than two valid samples."""
        t = frame["t"].to_numpy()
        inside = np.flatnonzero((t >= start) & (t <= end))
        if inside.size < 2 or f"{prefix}{names[0]}" not in frame:
            return None
        first, last = inside[0], inside[-1]
        values = frame[[f"{prefix}{name}" for name in names]].to_numpy()
        if not np.isfinite(values[[first, last]]).all() or t[last] <= t[first]:
            return None
        return (values[last] - values[first]).astype(np.int64).tolist(), float(t[last] - t[first])

    def storage_metrics(self, start: float, end: float) -> dict[str, dict]:
        """iostat -x's read figures of the dataset's device and, on NFS, the mount's READ
        figures, over [start, end]; all context (facts about the run, never judged)."""
        frame = self.frame()
        out: dict[str, dict] = {}
        if self.mount.counted_by != "block":
            # Local disks tell nothing about a dataset on NFS, FUSE or another mount without a
            # block device of its own: its mount and its link do. Never another device's
            # figures under the dataset's name.
            grown = None
        else:
            grown = self._window(frame, "device_", diskstats.COUNTER_NAMES, start, end)
        figures = (
            diskstats.read_metrics(diskstats.DiskCounters(*grown[0]), grown[1]) if grown else {}
        )
        if self.device is None and len(self.disks) != 1:
            figures.pop("util_pct", None)  # a sum of several disks' busy time is no utilisation
        for name, key, unit in diskstats.SUMMARY_METRICS:
            if key in figures or (grown is None and self.mount.counted_by == "block"):
                out[name] = metric(figures.get(key), unit, "context")
        if self.nfs_mount:
            grown = self._window(frame, "nfs_", mountstats.COUNTER_NAMES, start, end)
            figures = (
                mountstats.read_metrics(mountstats.NfsReadCounters(*grown[0]), grown[1])
                if grown
                else {}
            )
            for name, key, unit in mountstats.SUMMARY_METRICS:
                out[name] = metric(figures.get(key), unit, "context")
        return out

    def summary(self, start: float, end: float) -> dict[str, dict]:
        if self.unavailable is not None:
            return {}
        frame = self.frame()
        t = frame["t"].to_numpy()

        def rate(column: str) -> float | None:
            if column not in frame:
                return None
            found = counter_rate(t, frame[column].to_numpy(), start, end)
            return None if found is None else found / MB

        def delta(column: str) -> float | None:
            if column not in frame:
                return None
            return window_delta(t, frame[column].to_numpy(), start, end)

        storage = self.storage_metrics(start, end)
        # The run's read figure from the source that sees this mount's reads (mounts.py).
        if self.mount.counted_by == "nfs":
            read_MBps = storage.get("nfs_read_MBps", {}).get("value")
            read_bytes = delta("nfs_server_read_bytes")
        elif self.mount.counted_by == "pipeline":
            read_MBps, read_bytes = rate("missed_bytes"), delta("missed_bytes")
        else:
            read_MBps, read_bytes = rate("read_bytes"), delta("read_bytes")
        host: dict[str, dict] = {}
        if self.host_counters:
            host = {
                "missed_MBps": metric(rate("missed_bytes"), "MB/s", "context"),
                "link_rx_MBps": metric(rate("link_rx_bytes"), "MB/s", "context"),
                "link_rx_bytes": metric(delta("link_rx_bytes"), "B", "context"),
            }
            host = {k: v for k, v in host.items() if v["value"] is not None}
        figures = {
            "read_MBps": metric(read_MBps, "MB/s", "context"),
            "read_bytes": metric(read_bytes, "B", "context"),
            "process_read_MBps": metric(rate("read_bytes"), "MB/s", "context"),
            **host,
            "rchar_MBps": metric(rate("rchar"), "MB/s", "context"),
            "device_read_MBps": metric(rate("device_read_bytes"), "MB/s", "context"),
            "device_read_bytes": metric(
                window_delta(t, frame["device_read_bytes"].to_numpy(), start, end), "B", "context"
            ),
            **storage,
        }
        if self.mount.counted_by == "pipeline" and not self.host_counters:
            del figures["read_MBps"], figures["read_bytes"]
        return figures

    def whole_run(self, column: str) -> int | None:
        """How much counter ``column`` grew from the first sample to the last (None: not
        sampled, or fewer than two valid samples)."""
        frame = self.frame()
        if column not in frame:
            return None
        values = frame[column].dropna()
        if len(values) < 2:
            return None
        return int(values.iloc[-1] - values.iloc[0])


def collector(context: CollectorContext) -> IoCollector:
    """The registry's entry (``harness.registry.COLLECTORS``: "io")."""
    return IoCollector(
        rate_hz=context.rate_hz,
        t0=context.t0,
        root_pid=context.root_pid,
        dataset_path=context.dataset_path,
        tree=context.tree,
        role=context.role,
        missed_counter=context.missed_counter,
        host_counters=context.host_counters,
    )
