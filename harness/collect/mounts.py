"""Where a run's bytes are counted: the mount under each path it reads, and the source that sees
that mount's reads.

The per-process ``read_bytes`` the io collector uses is counted where a block device gets the
request. NFS and the netfs file systems count it in some of their read paths only, FUSE (sshfs,
object-store mounts) not at all: a run on such a mount would read "0 MB/s" while its bytes cross
a network. So each path gets the source that is right for its file system:

* ``block``    - a local block device: the process tree's ``read_bytes``, the device's diskstats;
* ``nfs``      - an NFS mount: that mount's bytes from the server (``/proc/self/mountstats``);
                 the process tree's ``read_bytes`` is the cross-check;
* ``pipeline`` - anything else (FUSE, 9p, unknown): the pipeline's own cache-miss accounting
                 (the pages ``mincore`` found absent just before each read, which the read
                 makes the storage send, summed per host: ``harness.collect.misses``); the
                 interface on the route to the mount's server (``ip route get``) counts the
                 bytes that crossed the link, the cross-check.

Pure where it can be (``server_host``, ``counted_by``, ``parse_net_dev``); ``locate`` asks the
system.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from harness.env import MOUNTINFO, existing_parent, find_mount

CountedBy = Literal["block", "nfs", "pipeline"]
NFS_TYPES = frozenset({"nfs", "nfs4"})
# How each source is named in summaries and reports.
SOURCE_NAMES: dict[str, str] = {
    "block": "block device: the process tree's read_bytes (/proc/<pid>/io)",
    "nfs": "NFS mount: bytes from the server (/proc/self/mountstats)",
    "pipeline": "pipeline cache misses: pages absent (mincore) just before each read",
}


@dataclass(frozen=True)
class StorageMount:
    """The mount under one path a run reads, and who counts its bytes."""

    path: str  # as the scenario gives it
    role: str  # "dataset" or "frame cache"
    mount_point: str | None
    fs_type: str | None
    source: str | None  # the mount's source: a device, server:/export, user@host:path
    device: str | None  # the diskstats name of its local block device, None if it has none
    counted_by: CountedBy
    server: str | None  # a network mount's server (host name or address); None otherwise
    interface: str | None  # the interface on the route to ``server``; None: not found
    note: str | None  # why something above is None

    @property
    def network(self) -> bool:
        """A mount whose bytes cross a network link (a server is named)."""
        return self.server is not None

    def record(self) -> dict[str, Any]:
        """The summary's record of this path (``summary.json`` ``storage``)."""
        return {**asdict(self), "counted_by_source": SOURCE_NAMES[self.counted_by]}


def counted_by(fs_type: str | None, device: str | None) -> CountedBy:
    """Which source counts the bytes read from a mount of ``fs_type`` (with a local block
    ``device`` or none)."""
    if fs_type in NFS_TYPES:
        return "nfs"
    if device is not None and not (fs_type or "").startswith("fuse"):
        return "block"
    return "pipeline"


def server_host(fs_type: str | None, source: str | None) -> str | None:
    """The server a network mount's source names, or None for a local one: NFS, GlusterFS and
    Ceph ``host:/export`` (IPv6 in brackets; Ceph lists monitors, the first is taken), sshfs
    ``[user@]host:path``, CIFS/SMB ``//host/share``."""
    if not fs_type or not source:
        return None
    kind = fs_type.removeprefix("fuse.")
    if kind in ("cifs", "smb3", "smbfs"):
        host = source.lstrip("/").split("/", 1)[0]
        return host or None
    if kind not in ("nfs", "nfs4", "sshfs", "glusterfs", "ceph", "lustre"):
        return None
    if kind == "lustre":  # mgs@tcp:/fsname
        host = source.split("@", 1)[0]
        return host or None
    rest = source.split("@", 1)[1] if kind == "sshfs" and "@" in source else source
    if rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        return host if after.startswith(":") else None
    host, sep, _ = rest.partition(":")
    if not sep:
        return None
    return host.split(",", 1)[0] or None


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """Interface -> (received bytes, transmitted bytes) from the text of /proc/net/dev (the
    calling process's network namespace)."""
    counters = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and len(fields) >= 9:
            counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def interface_bytes(interface: str) -> tuple[int, int] | None:
    """(rx, tx) bytes of ``interface`` now, None when it is gone."""
    try:
        return parse_net_dev(Path("/proc/net/dev").read_text()).get(interface)
    except OSError:
        return None


def route_interface(host: str) -> tuple[str | None, str | None]:
    """(the interface on the route to ``host``, None; or None and why)."""
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            address = str(socket.getaddrinfo(host, None)[0][4][0])
        except (OSError, IndexError) as exc:
            return None, f"cannot resolve {host}: {exc}"
    try:
        answer = subprocess.run(
            ["ip", "-o", "route", "get", address],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"ip route get {address}: {exc}"
    fields = answer.stdout.split()
    if answer.returncode != 0 or "dev" not in fields:
        return None, f"no route to {address} ({answer.stderr.strip() or 'ip route get failed'})"
    interface = fields[fields.index("dev") + 1]
    if interface == "lo":
        return None, f"{host} is this host: its bytes cross no link"
    return interface, None


def diskstats_names(text: str) -> dict[tuple[int, int], str]:
    names = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6:
            names[(int(fields[0]), int(fields[1]))] = fields[2]
    return names


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


def locate(path: Path, role: str) -> StorageMount:
    """The mount under ``path`` (or its nearest existing parent) and who counts its bytes."""
    resolved = existing_parent(path)
    note: str | None
    try:
        mount = find_mount(resolved, MOUNTINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        mount, note = None, f"{MOUNTINFO}: {exc.strerror or exc}"
    else:
        note = None if mount is not None else f"no mount in {MOUNTINFO} holds {resolved}"
    fs_type = mount.fs_type if mount else None
    device, device_note = locate_device(path) if os.path.exists(resolved) else (None, None)
    kind = counted_by(fs_type, device)
    server = server_host(fs_type, mount.source if mount else None)
    interface = None
    if server is not None:
        interface, why = route_interface(server)
        note = why or note
    elif kind != "block":
        note = device_note or note
    return StorageMount(
        path=str(path),
        role=role,
        mount_point=mount.mount_point if mount else None,
        fs_type=fs_type,
        source=mount.source if mount else None,
        device=device if kind == "block" else None,
        counted_by=kind,
        server=server,
        interface=interface,
        note=note,
    )
