"""A block device's read statistics from /proc/diskstats, computed exactly as ``iostat -x`` does.

Pure: counters in, numbers out. /proc/diskstats counts, per device and since boot (kernel
Documentation/admin-guide/iostats.rst): reads completed, reads merged, 512-byte sectors read,
milliseconds spent reading, the same four for writes, I/Os in flight, milliseconds with I/O in
flight (``io_ticks``), and the weighted milliseconds of all I/Os (``time_in_queue``). Over an
interval of ``s`` seconds, sysstat's iostat (rd_stats.c ``compute_ext_disk_stats``, iostat.c)
reports:

=============  =====================================================  ========
iostat         formula                                                unit
=============  =====================================================  ========
``r/s``        reads / s                                              reads/s
``rkB/s``      sectors / 2 / s (iostat's kB are KiB: 1024 bytes)      KiB/s
``rrqm/s``     merges / s                                             merges/s
``rareq-sz``   sectors / 2 / reads (0 without reads)                  KiB
``r_await``    read ms / reads (0 without reads)                      ms
``aqu-sz``     time_in_queue ms / 1000 / s                            requests
``%util``      io_ticks ms / (1000 s) x 100                           %
=============  =====================================================  ========

``aqu-sz`` and ``%util`` count writes too: they are the device's, as in iostat. Where iostat
prints 0 for the per-read figures of an interval without reads, ``read_metrics`` gives None (not
measured), never a zero that reads as "instant".
"""

from __future__ import annotations

from dataclasses import dataclass, fields

SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's sector size


@dataclass(frozen=True)
class DiskCounters:
    """The cumulative counters of one device that the read statistics need."""

    reads: int
    read_merges: int
    read_sectors: int
    read_ms: int
    io_ms: int  # io_ticks: time with at least one I/O in flight
    queue_ms: int  # time_in_queue: the sum of every I/O's time, reads and writes

    def minus(self, earlier: DiskCounters) -> DiskCounters:
        return DiskCounters(
            *(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self))
        )

    def plus(self, other: DiskCounters) -> DiskCounters:
        return DiskCounters(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


COUNTER_NAMES = tuple(f.name for f in fields(DiskCounters))


def parse_line(fields_: list[str] | list[bytes]) -> DiskCounters:
    """Counters from the fields of one /proc/diskstats line (major, minor, name, counters...)."""
    if len(fields_) < 14:
        raise ValueError(f"a /proc/diskstats line has 14 or more fields, this one {len(fields_)}")
    value = [int(f) for f in fields_[3:14]]
    return DiskCounters(
        reads=value[0],
        read_merges=value[1],
        read_sectors=value[2],
        read_ms=value[3],
        io_ms=value[9],
        queue_ms=value[10],
    )


def parse_diskstats(text: str | bytes) -> dict[str, DiskCounters]:
    """Every device of a /proc/diskstats text, by name."""
    lines = text.splitlines()
    devices: dict[str, DiskCounters] = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 14:
            name = parts[2]
            devices[name.decode() if isinstance(name, bytes) else name] = parse_line(parts)
    return devices


def read_metrics(delta: DiskCounters, seconds: float) -> dict[str, float | None]:
    """iostat -x's read figures for counters that grew by ``delta`` over ``seconds``."""
    if not seconds > 0:
        raise ValueError(f"an interval must be positive, got {seconds}")
    reads = delta.reads
    return {
        "r_per_s": reads / seconds,
        "rkB_per_s": delta.read_sectors * SECTOR_BYTES / 1024 / seconds,
        "rrqm_per_s": delta.read_merges / seconds,
        "rareq_sz_kB": delta.read_sectors * SECTOR_BYTES / 1024 / reads if reads else None,
        "r_await_ms": delta.read_ms / reads if reads else None,
        "aqu_sz": delta.queue_ms / 1000 / seconds,
        "util_pct": delta.io_ms / 1000 / seconds * 100,
    }


# summary metric name, read_metrics key, unit (iostat's column in the docs)
SUMMARY_METRICS = (
    ("disk_r_per_s", "r_per_s", "reads/s"),
    ("disk_rKiB_per_s", "rkB_per_s", "KiB/s"),
    ("disk_rrqm_per_s", "rrqm_per_s", "merges/s"),
    ("disk_rareq_KiB", "rareq_sz_kB", "KiB"),
    ("disk_r_await_ms", "r_await_ms", "ms"),
    ("disk_aqu_sz", "aqu_sz", "requests"),
    ("disk_util_pct", "util_pct", "%"),
)
