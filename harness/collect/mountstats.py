"""An NFS mount's own view of its reads, from /proc/self/mountstats (what nfsiostat reads).

Pure: text in, counters and numbers out. For every NFS mount the kernel's NFS client writes a
section (fs/nfs/super.c ``nfs_show_stats``, net/sunrpc/stats.c ``rpc_clnt_show_stats``):

    device SERVER:/export mounted on /mnt/data with fstype nfs4 statvers=1.1
        bytes:  normalread normalwrite directread directwrite serverread serverwrite readpages ...
        per-op statistics
                READ: ops transmissions major_timeouts bytes_sent bytes_received queue_ms
                      rtt_ms execute_ms [errors]

Over an interval, as nfsiostat (nfs-utils) reports them: READ ops/s; bytes read from the server
(``bytes: serverread``, the payload) per second; average RTT (rtt_ms / ops: the wire and the
server) and average execute time (execute_ms / ops: from the call's start to its end, queueing
in the client included) in ms; retransmissions (transmissions - ops) and major timeouts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

_HEADER = re.compile(r"^device (\S+) mounted on (\S+) with fstype (\S+)(?: statvers=(\S+))?")
NFS_TYPES = frozenset({"nfs", "nfs4"})


@dataclass(frozen=True)
class OpCounters:
    """One line of ``per-op statistics`` (cumulative since the mount)."""

    ops: int
    transmissions: int
    major_timeouts: int
    bytes_sent: int
    bytes_received: int
    queue_ms: int
    rtt_ms: int
    execute_ms: int
    errors: int | None  # kernels before 5.x print 8 fields, without errors


@dataclass(frozen=True)
class NfsMount:
    device: str
    mount_point: str
    fstype: str
    statvers: str | None
    byte_counters: tuple[int, ...]  # the ``bytes:`` line
    ops: dict[str, OpCounters]

    @property
    def server_read_bytes(self) -> int | None:
        return self.byte_counters[4] if len(self.byte_counters) > 4 else None


def _op_counters(numbers: list[int]) -> OpCounters:
    """The counters of one per-op line: 8 numbers, or 9 where the kernel prints errors."""
    ops, transmissions, major_timeouts, sent, received, queue_ms, rtt_ms, execute_ms = numbers[:8]
    errors = numbers[8] if len(numbers) > 8 else None
    return OpCounters(
        ops, transmissions, major_timeouts, sent, received, queue_ms, rtt_ms, execute_ms, errors
    )


def _unescape(path: str) -> str:
    """Mount points are printed with octal escapes for space, tab, newline and backslash."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mountstats(text: str) -> dict[str, NfsMount]:
    """The NFS mounts of a /proc/self/mountstats text, by mount point (a later mount on the same
    point hides an earlier one, as it does in the file system)."""
    mounts: dict[str, NfsMount] = {}
    current: dict | None = None

    def close() -> None:
        if current is not None:
            mount = NfsMount(**current)
            mounts[mount.mount_point] = mount

    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            close()
            device, mount_point, fstype, statvers = header.groups()
            current = None
            if fstype in NFS_TYPES:
                current = {
                    "device": device,
                    "mount_point": _unescape(mount_point),
                    "fstype": fstype,
                    "statvers": statvers,
                    "byte_counters": (),
                    "ops": {},
                }
            continue
        if current is None:
            continue
        label, _, rest = line.strip().partition(":")
        values = rest.split()
        try:
            if label == "bytes":
                current["byte_counters"] = tuple(int(v) for v in values)
            elif label.isupper() and len(values) >= 8 and values[0].isdigit():
                numbers = [int(v) for v in values[:9]]
                current["ops"][label] = _op_counters(numbers)
        except ValueError as exc:
            raise ValueError(f"mountstats line {number}: {line.strip()!r}: {exc}") from exc
    close()
    return mounts


@dataclass(frozen=True)
class NfsReadCounters:
    """What the read figures of one mount need (cumulative)."""

    ops: int
    transmissions: int
    major_timeouts: int
    rtt_ms: int
    execute_ms: int
    server_read_bytes: int

    @classmethod
    def of(cls, mount: NfsMount) -> NfsReadCounters:
        read = mount.ops.get("READ") or OpCounters(0, 0, 0, 0, 0, 0, 0, 0, None)
        return cls(
            ops=read.ops,
            transmissions=read.transmissions,
            major_timeouts=read.major_timeouts,
            rtt_ms=read.rtt_ms,
            execute_ms=read.execute_ms,
            server_read_bytes=mount.server_read_bytes or 0,
        )

    def minus(self, earlier: NfsReadCounters) -> NfsReadCounters:
        return NfsReadCounters(
            *(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self))
        )


COUNTER_NAMES = tuple(f.name for f in fields(NfsReadCounters))


def read_metrics(delta: NfsReadCounters, seconds: float) -> dict[str, float | None]:
    """nfsiostat's read figures for counters that grew by ``delta`` over ``seconds``."""
    if not seconds > 0:
        raise ValueError(f"an interval must be positive, got {seconds}")
    ops = delta.ops
    return {
        "read_ops_per_s": ops / seconds,
        "read_MBps": delta.server_read_bytes / seconds / 1e6,
        "read_rtt_ms": delta.rtt_ms / ops if ops else None,
        "read_exe_ms": delta.execute_ms / ops if ops else None,
        "read_retrans": float(delta.transmissions - ops),
        "read_major_timeouts": float(delta.major_timeouts),
    }


# summary metric name, read_metrics key, unit
SUMMARY_METRICS = (
    ("nfs_read_ops_per_s", "read_ops_per_s", "ops/s"),
    ("nfs_read_MBps", "read_MBps", "MB/s"),
    ("nfs_read_rtt_ms", "read_rtt_ms", "ms"),
    ("nfs_read_exe_ms", "read_exe_ms", "ms"),
    ("nfs_read_retrans", "read_retrans", "retransmissions"),
    ("nfs_read_major_timeouts", "read_major_timeouts", "timeouts"),
)
