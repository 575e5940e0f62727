"""Bringing the lab up, changing its rate, taking it down.

``up`` writes the state file after every step, and on any failure takes down what it made
before it says why; ``down`` undoes what the state file records and then sweeps by name (the
``hlab-`` namespaces, the mounts under /mnt/harness-lab), so that it also clears what an ``up``
killed half way left, and it is idempotent.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness.errors import HarnessError, one_line
from harness.lab import plan, system
from harness.lab.state import LabLink, LabMount, LabProcess, LabState, read_state, write_state

READY_TIMEOUT_S = 10.0


class LabUnavailable(HarnessError):
    """The lab cannot be brought up here; the message is the reason (the command prints
    ``lab not available: <reason>``)."""


def lab_unavailable() -> str | None:
    """Why the lab cannot run on this machine (not root, a tool missing, network namespaces
    refused), or None. Making a namespace is tried for real (and undone at once): a container
    without CAP_NET_ADMIN / CAP_SYS_ADMIN refuses it whatever else is in place."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth links, tc and FUSE mounts)"
    missing = sorted(
        {package for tool, package in plan.TOOLS.items() if shutil.which(tool) is None}
    )
    if missing:
        return f"missing packages: {', '.join(missing)} (make system-tools installs them)"
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse (sshfs needs FUSE)"
    probe = f"{plan.NAMESPACE_PREFIX}probe{os.getpid()}"
    try:
        system.run(["ip", "netns", "add", probe])
    except system.CommandFailed as exc:
        return f"cannot make a network namespace: {exc}"
    try:
        system.run(["ip", "netns", "del", probe])
    except system.CommandFailed as exc:
        return f"cannot remove a network namespace: {exc}"
    return None


@dataclass
class UpRequest:
    clients: int = 1
    rate: plan.Rate = field(default_factory=lambda: plan.parse_rate("100mbit"))
    delay_ms: float | None = None
    export: Path = plan.DEFAULT_EXPORT

    def check(self) -> None:
        if not 1 <= self.clients <= plan.MAX_CLIENTS:
            raise HarnessError(f"--clients {self.clients}: must be 1 to {plan.MAX_CLIENTS}")
        if self.delay_ms is not None:
            plan.check_delay(self.delay_ms)
        if not self.export.is_absolute():
            raise HarnessError(f"--export {self.export}: must be an absolute path")


def up(request: UpRequest, state_dir: Path = plan.STATE_DIR) -> LabState:
    """Make the namespaces, links, sshd, node_exporter and mounts; the lab's state. A
    ``LabUnavailable`` naming the reason, with nothing left behind, when any step fails."""
    request.check()
    reason = lab_unavailable()
    if reason:
        raise LabUnavailable(reason)
    if read_state(state_dir) is not None or system.lab_namespaces():
        raise HarnessError("the lab is already up (or left over): harness lab down first")
    began = time.monotonic()
    state = LabState(
        phase="starting",
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        export=request.export,
        export_device=None,
        clients=request.clients,
    )
    try:
        _make_state_dir(state, state_dir)
        _make_export(state, request.export)
        _make_namespaces(state, state_dir)
        _make_links(state, request, state_dir)
        _start_sshd(state, state_dir)
        _start_exporter(state, state_dir)
        _mount_clients(state, state_dir)
    except BaseException as exc:
        problems = down(state_dir)
        if isinstance(exc, Exception):
            reason = one_line(exc)
            if problems:
                reason += f" (and down left: {'; '.join(problems)})"
            raise LabUnavailable(reason) from None
        raise
    state.phase = "up"
    state.setup_s = round(time.monotonic() - began, 3)
    write_state(state, state_dir)
    return state


def _make_state_dir(state: LabState, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # the state file is read by unprivileged harness runs (export_side)
    write_state(state, state_dir)


def _make_export(state: LabState, export: Path) -> None:
    try:
        export.mkdir(parents=True, exist_ok=True)  # kept by down: it holds the user's data
    except OSError as exc:
        raise HarnessError(f"cannot make the export folder {export}: {one_line(exc)}") from None
    state.export_device = system.block_device(export)


def _make_namespaces(state: LabState, state_dir: Path) -> None:
    names = [plan.STORAGE_NAMESPACE, *map(plan.client_namespace, range(1, state.clients + 1))]
    for name in names:
        system.run(["ip", "netns", "add", name])
        state.namespaces.append(name)
        write_state(state, state_dir)
        system.run(["ip", "-n", name, "link", "set", "lo", "up"])
    base = Path("/etc/hosts").read_text() if Path("/etc/hosts").is_file() else ""
    for name in names:
        folder = plan.NETNS_ETC / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text(plan.hosts_file(state.clients, base))
    # The storage host routes between its links, so that clients reach each other (a multi-host
    # run's rendezvous between client namespaces).
    system.run(
        ["ip", "netns", "exec", plan.STORAGE_NAMESPACE, "sysctl", "-qw", "net.ipv4.ip_forward=1"]
    )


def _make_links(state: LabState, request: UpRequest, state_dir: Path) -> None:
    for n in range(1, state.clients + 1):
        storage_if, client_if = plan.storage_interface(n), plan.client_interface(n)
        namespace = plan.client_namespace(n)
        # Both ends are made inside their namespaces: no interface of the lab ever exists in
        # this machine's own namespace, even for a moment.
        system.run(
            ["ip", "link", "add", storage_if, "netns", plan.STORAGE_NAMESPACE, "type", "veth",
             "peer", "name", client_if, "netns", namespace]
        )  # fmt: skip
        storage_cidr = f"{plan.storage_address(n)}/{plan.PREFIX_LENGTH}"
        client_cidr = f"{plan.client_address(n)}/{plan.PREFIX_LENGTH}"
        system.run(
            ["ip", "-n", plan.STORAGE_NAMESPACE, "addr", "add", storage_cidr, "dev", storage_if]
        )
        system.run(["ip", "-n", plan.STORAGE_NAMESPACE, "link", "set", storage_if, "up"])
        system.run(["ip", "-n", namespace, "addr", "add", client_cidr, "dev", client_if])
        system.run(["ip", "-n", namespace, "link", "set", client_if, "up"])
        system.run(
            ["ip", "-n", namespace, "route", "add", "default", "via", plan.storage_address(n)]
        )
        if request.delay_ms is not None:
            try:
                system.run(plan.netem_command(n, request.delay_ms))
            except system.CommandFailed as exc:
                raise LabUnavailable(
                    f"--delay-ms needs tc's netem qdisc, which this kernel lacks ({exc})"
                ) from None
        system.run(plan.tbf_command(n, request.rate, delay=request.delay_ms is not None))
        state.links.append(
            LabLink(
                client=n,
                namespace=namespace,
                storage_interface=storage_if,
                storage_address=storage_cidr,
                client_interface=client_if,
                client_address=client_cidr,
                rate=request.rate.text,
                rate_bits_per_s=request.rate.bits_per_s,
                burst_bytes=request.rate.burst_bytes,
                queue_latency_ms=plan.QUEUE_LATENCY_MS,
                delay_ms=request.delay_ms,
            )
        )
        write_state(state, state_dir)


def _start(
    state: LabState, state_dir: Path, role: str, command: list[str], namespace: str | None
) -> LabProcess:
    log = state_dir / f"{role.replace(' ', '-')}.log"
    pid = system.spawn(command, log)
    ticks = system.start_ticks(pid)
    process = LabProcess(role=role, pid=pid, start_ticks=ticks or 0, namespace=namespace, log=log)
    state.processes.append(process)
    write_state(state, state_dir)
    return process


def _wait(process: LabProcess, ready: Callable[[], bool], what: str) -> None:
    """Wait until ``ready()`` is true; a one-line error with the last line of the process's log
    when it exits first or takes longer than READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():
        if system.exited(process.pid):
            raise HarnessError(
                f"{process.role} exited: {system.log_tail(process.log) or 'no message'}"
            )
        if time.monotonic() > deadline:
            tail = system.log_tail(process.log) or "no message"
            raise HarnessError(f"{process.role}: no {what} after {READY_TIMEOUT_S:g} s: {tail}")
        time.sleep(0.02)


def _start_sshd(state: LabState, state_dir: Path) -> None:
    host_key = state_dir / "ssh_host_ed25519_key"
    client_key = state_dir / "client_ed25519_key"
    for key in (host_key, client_key):
        system.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "harness-lab", "-f", str(key)]
        )
    authorized = state_dir / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    public = Path(f"{host_key}.pub").read_text()
    (state_dir / "known_hosts").write_text(plan.known_hosts_line(state.clients, public))
    (state_dir / "sshd_config").write_text(plan.sshd_config(state_dir, state.clients))
    if not plan.SSHD_PRIVSEP_DIR.exists():
        plan.SSHD_PRIVSEP_DIR.mkdir(mode=0o755)
        state.created_paths.append(plan.SSHD_PRIVSEP_DIR)
    sshd = _start(state, state_dir, "sshd", plan.sshd_command(state_dir), plan.STORAGE_NAMESPACE)
    for n in range(1, state.clients + 1):
        address = plan.storage_address(n)
        _wait(
            sshd,
            partial(system.listening, sshd.pid, address, plan.SSH_PORT),
            f"socket on {address}:{plan.SSH_PORT}",
        )


def _start_exporter(state: LabState, state_dir: Path) -> None:
    exporter = _start(
        state, state_dir, "node_exporter", plan.exporter_command(), plan.STORAGE_NAMESPACE
    )
    address = plan.storage_address(1)
    _wait(
        exporter,
        lambda: system.listening(exporter.pid, address, plan.EXPORTER_PORT),
        f"socket on {address}:{plan.EXPORTER_PORT}",
    )
    state.exporter_url = plan.exporter_url()
    write_state(state, state_dir)


def _mount_clients(state: LabState, state_dir: Path) -> None:
    if plan.MOUNT_ROOT not in state.created_paths and not plan.MOUNT_ROOT.exists():
        state.created_paths.append(plan.MOUNT_ROOT)
    for n in range(1, state.clients + 1):
        point = plan.mount_point(n)
        point.mkdir(parents=True, exist_ok=True)
        state.created_paths.append(point)
        command = plan.sshfs_command(n, state.export, state_dir)
        state.mounts.append(
            LabMount(client=n, mount_point=point, source=command[1], command=command)
        )
        sshfs = _start(state, state_dir, f"sshfs client{n}", command, None)
        _wait(sshfs, partial(system.is_mounted, point), f"mount on {point}")


# --- rate ---------------------------------------------------------------------------------------


def set_rate(
    rate: plan.Rate, client: int | None = None, state_dir: Path = plan.STATE_DIR
) -> LabState:
    """Change the rate of one client's link (every link when ``client`` is None); recorded."""
    state = require_state(state_dir)
    links = [link for link in state.links if client is None or link.client == client]
    if not links:
        raise HarnessError(f"--client {client}: the lab has clients 1 to {state.clients}")
    for link in links:
        system.run(
            plan.tbf_command(link.client, rate, delay=link.delay_ms is not None, verb="change")
        )
        link.rate, link.rate_bits_per_s, link.burst_bytes = (
            rate.text,
            rate.bits_per_s,
            rate.burst_bytes,
        )
    write_state(state, state_dir)
    return state


def require_state(state_dir: Path = plan.STATE_DIR) -> LabState:
    state = read_state(state_dir)
    if state is None:
        raise HarnessError("the lab is down: harness lab up first")
    return state


# --- down ---------------------------------------------------------------------------------------


def down(state_dir: Path = plan.STATE_DIR) -> list[str]:
    """Stop everything the lab started and remove everything it made (the export folder and
    its files stay); what could not be undone, a line each (empty: nothing is left)."""
    problems: list[str] = []
    try:
        state = read_state(state_dir)
        unreadable = None
    except HarnessError as exc:  # the sweep by name below still clears the lab
        state, unreadable = None, f"{exc} (swept by name instead)"
    points = [mount.mount_point for mount in state.mounts] if state else []
    points += [point for point, _ in system.mounts_under(plan.MOUNT_ROOT)]
    for point in dict.fromkeys(points):
        problem = system.unmount(point)
        if problem:
            problems.append(f"{point}: still mounted: {problem}")
    # sshfs exits once unmounted, sshd's sessions once their client is gone: stop the rest.
    for process in reversed(state.processes) if state else []:
        if not system.stop(process.pid, process.start_ticks):
            problems.append(f"{process.role} (pid {process.pid}) did not stop")
    names = dict.fromkeys([*(state.namespaces if state else []), *system.lab_namespaces()])
    for name in names:
        for pid in system.namespace_pids(name):  # e.g. ssh transports, a harness run in a client
            ticks = system.start_ticks(pid)
            if ticks is not None and not system.stop(pid, ticks):
                problems.append(f"pid {pid} in {name} did not stop")
        if name in system.lab_namespaces():
            try:
                system.run(["ip", "netns", "del", name])  # its links and their qdiscs with it
            except system.CommandFailed as exc:
                problems.append(str(exc))
    for path in sorted(
        state.created_paths if state else [], key=lambda p: len(p.parts), reverse=True
    ):
        if path.is_dir() and not system.is_mounted(path):
            try:
                path.rmdir()
            except OSError as exc:
                problems.append(f"{path}: not removed: {one_line(exc)}")
    for point in [*(plan.mount_point(n) for n in range(1, plan.MAX_CLIENTS + 1)), plan.MOUNT_ROOT]:
        # left by an up that died before recording them: only empty folders, never data
        if point.is_dir() and not system.is_mounted(point):
            with suppress(OSError):
                point.rmdir()
    for folder in plan.NETNS_ETC.glob(f"{plan.NAMESPACE_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)  # the namespaces' /etc/hosts
    if not problems:  # kept otherwise: the next down still knows the pids and paths
        shutil.rmtree(state_dir, ignore_errors=True)
    return problems if unreadable is None else [unreadable, *problems]


# --- status -------------------------------------------------------------------------------------


def status(state_dir: Path = plan.STATE_DIR) -> dict[str, object]:
    """What is up, as recorded and as seen now: ``{"up": False}`` when no lab is up."""
    state = read_state(state_dir)
    leftovers = system.lab_namespaces()
    if state is None:
        return {"up": False, "leftover_namespaces": leftovers}
    processes = [
        {**process.model_dump(mode="json"), "alive": system.alive(process.pid, process.start_ticks)}
        for process in state.processes
    ]
    mounts = [
        {**mount.model_dump(mode="json"), "mounted": system.is_mounted(mount.mount_point)}
        for mount in state.mounts
    ]
    qdiscs = {}
    for link in state.links:
        try:
            output = system.run(
                ["tc", "-n", plan.STORAGE_NAMESPACE, "qdisc", "show", "dev", link.storage_interface]
            )
            qdiscs[link.storage_interface] = " | ".join(
                line.strip() for line in output.splitlines()
            )
        except system.CommandFailed as exc:
            qdiscs[link.storage_interface] = f"not found: {exc}"
    return {
        "up": True,
        "state": {**state.model_dump(mode="json"), "processes": processes, "mounts": mounts},
        "namespaces_present": [name for name in state.namespaces if name in leftovers],
        "qdiscs": qdiscs,
    }
