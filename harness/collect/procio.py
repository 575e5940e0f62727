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

Frame columns: t, read_bytes, rchar (tree, cumulative since the first sample), read_MBps,
rchar_MBps (from the previous sample), device_read_bytes (cumulative), device_read_MBps, procs
(live tree members). MB = 10**6 bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

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

SECTOR_BYTES = 512  # diskstats counts 512-byte sectors whatever the device's sector size
MB = 1e6
RAW_COLUMNS = ("t", "read_bytes", "rchar", "device_read_bytes", "procs")


def parse_io(data: bytes) -> tuple[int, int]:
    """(read_bytes, rchar) from the text of /proc/<pid>/io."""
    fields = data.split()  # rchar: N wchar: N syscr: N syscw: N read_bytes: N ...
    if fields[0] != b"rchar:" or fields[8] != b"read_bytes:":
        raise ValueError("unexpected layout of /proc/<pid>/io")
    return int(fields[9]), int(fields[1])


def diskstats_names(text: str) -> dict[tuple[int, int], str]:
    names = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6:
            names[(int(fields[0]), int(fields[1]))] = fields[2]
    return names


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


def locate_device(dataset_path: Path) -> tuple[str | None, str | None]:
    """(diskstats name of the device holding the dataset, or None; a note when None or when
    the device was found through the mount table)."""
    path = existing_parent(dataset_path)
    st_dev = path.stat().st_dev
    dev = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    try:
        names = diskstats_names(Path("/proc/diskstats").read_text())
    except OSError:
        return None, "no /proc/diskstats on this system"
    name = names.get((os.major(st_dev), os.minor(st_dev)))
    if name is not None:
        return name, None
    try:
        mount = find_mount(path, Path("/proc/self/mountinfo").read_text())
    except OSError:
        mount = None
    if mount is None:
        return None, f"no block device found for {path} (st_dev {dev})"
    fstype, source = mount.fs_type, mount.source
    if source.startswith("/dev/"):
        candidate = os.path.basename(os.path.realpath(source))
        if candidate in names.values():
            return candidate, f"{path} is on {fstype} over {source}"
    return None, f"the dataset is on {fstype} ({source}), which has no local block device"


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
    ) -> None:
        super().__init__(rate_hz=rate_hz, t0=t0, columns=RAW_COLUMNS)
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
        self._device_baseline: int | None = None
        try:
            self._diskstats = ProcFile("/proc/diskstats")
        except OSError:
            self._diskstats = None

    def _device_sectors(self) -> int | None:
        if self._diskstats is None:
            return None
        data = self._diskstats.read()
        if self._device_key:
            at = data.find(self._device_key)
            if at < 0:
                return None
            # after the name: reads completed, reads merged, sectors read
            return int(data[at : data.find(b"\n", at)].split()[3])
        total = 0
        for line in data.splitlines():
            fields = line.split(None, 6)
            if len(fields) > 5 and fields[2] in self._disk_names:
                total += int(fields[5])
        return total if self._disk_names else None

    def _sample(self) -> None:
        t = self._now()
        (read_bytes, rchar), _, procs = self._counters.sample()
        sectors = self._device_sectors()
        if sectors is None:
            device_bytes = float("nan")
        else:
            if self._device_baseline is None:
                self._device_baseline = sectors
            device_bytes = (sectors - self._device_baseline) * SECTOR_BYTES
        self._record((t, read_bytes, rchar, device_bytes, procs))

    def _close(self) -> None:
        self._counters.close()
        if self._diskstats is not None:
            self._diskstats.close()
            self._diskstats = None

    def _build_frame(self, raw: np.ndarray) -> pd.DataFrame:
        t, read_bytes, rchar, device_bytes, procs = raw.T
        return pd.DataFrame(
            {
                "t": t,
                "read_bytes": read_bytes,
                "rchar": rchar,
                "read_MBps": per_sample_rate(t, read_bytes) / MB,
                "rchar_MBps": per_sample_rate(t, rchar) / MB,
                "device_read_bytes": device_bytes,
                "device_read_MBps": per_sample_rate(t, device_bytes) / MB,
                "procs": procs,
            }
        )

    def summary(self, start: float, end: float) -> dict[str, dict]:
        if self.unavailable is not None:
            return {}
        frame = self.frame()
        t = frame["t"].to_numpy()

        def rate(column: str) -> float | None:
            found = counter_rate(t, frame[column].to_numpy(), start, end)
            return None if found is None else found / MB

        return {
            "read_MBps": metric(rate("read_bytes"), "MB/s", "context"),
            "read_bytes": metric(
                window_delta(t, frame["read_bytes"].to_numpy(), start, end), "B", "context"
            ),
            "rchar_MBps": metric(rate("rchar"), "MB/s", "context"),
            "device_read_MBps": metric(rate("device_read_bytes"), "MB/s", "context"),
            "device_read_bytes": metric(
                window_delta(t, frame["device_read_bytes"].to_numpy(), start, end), "B", "context"
            ),
        }
