"""What the lab asks of this machine: commands, processes, mounts, namespaces, listening sockets.

Each helper reads the kernel's own tables (``/proc``, ``/sys``) where they answer the question,
and runs ``ip``, ``tc``, ``fusermount3`` where a change is made.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from harness.errors import HarnessError, one_line
from harness.lab.plan import NAMESPACE_PREFIX


class CommandFailed(HarnessError):
    """A command the lab ran exited non-zero; the message names it and quotes its error."""


def run(command: Sequence[str], *, timeout_s: float = 30) -> str:
    """Run ``command``; its stdout. ``CommandFailed`` (one line: the command and its stderr)
    when it fails or cannot start."""
    try:
        done = subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailed(f"{' '.join(command)}: {one_line(exc)}") from None
    if done.returncode != 0:
        reason = one_line(done.stderr or done.stdout, 300) or f"exit status {done.returncode}"
        raise CommandFailed(f"{' '.join(command)}: {reason}")
    return done.stdout


# --- processes ----------------------------------------------------------------------------------


def spawn(command: Sequence[str], log: Path) -> int:
    """Start ``command`` in a session of its own (it outlives this process and no terminal's
    signals reach it), stdin from /dev/null, stdout and stderr appended to ``log``; its pid."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawnp(
            command[0], list(command), os.environ, file_actions=actions, setsid=True
        )
    except OSError as exc:
        raise CommandFailed(f"{command[0]}: cannot start: {one_line(exc)}") from None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), or None when there is no such
    process or it has exited (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of the whole line


def alive(pid: int, ticks: int) -> bool:
    """Whether the process the lab recorded as (pid, start ticks) is still running."""
    _reap(pid)
    return start_ticks(pid) == ticks


def _reap(pid: int) -> None:
    # A process this one started (up, or a test calling up and down in one process) stays a
    # zombie until waited for; any other pid is not ours to wait for.
    with suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, ticks: int, *, grace_s: float = 3.0) -> bool:
    """SIGTERM the recorded process, SIGKILL after ``grace_s``; whether it is gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        if not alive(pid, ticks):
            return True
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not alive(pid, ticks):
                return True
            time.sleep(0.02)
    return not alive(pid, ticks)


def exited(pid: int) -> bool:
    """Whether a process this one spawned has exited (it is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return start_ticks(pid) is None
    return done == pid


def log_tail(log: Path, limit: int = 300) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return one_line(lines[-1], limit) if lines else ""


# --- namespaces ---------------------------------------------------------------------------------


def lab_namespaces() -> list[str]:
    """The network namespaces whose names say the lab made them."""
    try:
        output = run(["ip", "netns", "list"])
    except CommandFailed:
        return []
    names = (line.split()[0] for line in output.splitlines() if line.strip())
    return [name for name in names if name.startswith(NAMESPACE_PREFIX)]


def namespace_pids(namespace: str) -> list[int]:
    try:
        return [int(pid) for pid in run(["ip", "netns", "pids", namespace]).split()]
    except CommandFailed:
        return []


def listening(pid: int, address: str, port: int) -> bool:
    """Whether a TCP socket listens on ``address:port`` in the network namespace of process
    ``pid`` (``/proc/PID/net/tcp`` is that namespace's table)."""
    local = f"{socket.inet_aton(address)[::-1].hex().upper()}:{port:04X}"
    try:
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(row.split()[1] == local and row.split()[3] == "0A" for row in table)  # 0A: LISTEN


def interface_bytes(namespace: str, interface: str) -> tuple[int, int]:
    """(received, sent) bytes of ``interface`` in ``namespace``, from its /proc/net/dev."""
    output = run(["ip", "netns", "exec", namespace, "cat", "/proc/net/dev"])
    for line in output.splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == interface:
            fields = counters.split()
            return int(fields[0]), int(fields[8])
    raise HarnessError(f"no interface {interface} in network namespace {namespace}")


# --- mounts -------------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...)
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_under(root: Path) -> list[tuple[Path, str]]:
    """(mount point, file system type) of every mount at or under ``root``, deepest first."""
    found: list[tuple[Path, str]] = []
    with suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            point = Path(_unescape(before.split()[4]))
            if point == root or root in point.parents:
                found.append((point, after.split()[0]))
    return sorted(found, key=lambda item: len(item[0].parts), reverse=True)


def is_mounted(point: Path) -> bool:
    return any(found == point for found, _ in mounts_under(point))


def unmount(point: Path) -> str | None:
    """Unmount a FUSE mount (fusermount3 -u), lazily where it is busy (-uz, then umount -l);
    None when done, else why not."""
    problem = None
    for command in (
        ["fusermount3", "-u", str(point)],
        ["fusermount3", "-u", "-z", str(point)],
        ["umount", "-l", str(point)],
    ):
        if not is_mounted(point):
            return None
        try:
            run(command)
        except CommandFailed as exc:
            problem = str(exc)
    return None if not is_mounted(point) else problem


# --- the export's disk --------------------------------------------------------------------------


def block_device(path: Path) -> str | None:
    """The disk under ``path`` as /proc/diskstats (and node_exporter) name it, e.g. ``vda``
    (a partition's disk: node_exporter leaves partitions out); None when the file system is on
    no block device (tmpfs, overlay, a network file system)."""
    try:
        device = os.stat(path).st_dev
    except OSError:
        return None
    sysfs = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}")
    try:
        resolved = sysfs.resolve(strict=True)
    except OSError:
        return None
    return resolved.parent.name if (resolved / "partition").exists() else resolved.name
