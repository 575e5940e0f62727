"""The network storage lab (harness/lab/): its pure parts here, fast; the real lab (root,
namespaces, sshfs) in the slow tests, which skip saying why where the machine cannot have it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import lab
from harness.errors import HarnessError
from harness.lab import lifecycle, plan, system
from harness.lab.state import LabMount, LabState, export_side, read_state, write_state
from harness.pagecache import evict

pytestmark = pytest.mark.alone  # the lab's namespaces and names are the machine's

# --- pure parts ---------------------------------------------------------------------------------


def test_rates_are_read_as_tc_reads_them_and_bytes_per_second_are_refused() -> None:
    assert plan.parse_rate("50mbit") == plan.Rate("50mbit", 50_000_000)
    assert plan.parse_rate("1.5Gbit").bits_per_s == 1_500_000_000
    assert plan.parse_rate("512kbit").burst_bytes == 32 * 1024  # the floor
    assert plan.parse_rate("1gbit").burst_bytes == 1_250_000  # 10 ms of the rate
    for bad in ("50mbps", "50", "fast", "-1mbit", "10bit", "1tbit"):
        with pytest.raises(HarnessError, match=f"rate '{bad}'"):
            plan.parse_rate(bad)


def test_tc_command_lines_limit_the_storage_end_and_keep_a_delay_when_the_rate_changes() -> None:
    rate = plan.parse_rate("10mbit")
    assert plan.tbf_command(2, rate, delay=False) == [
        "tc", "-n", "hlab-storage", "qdisc", "add", "dev", "hls2", "root", "handle", "2:",
        "tbf", "rate", "10000000bit", "burst", "32768", "latency", "50ms",
    ]  # fmt: skip
    changed = plan.tbf_command(1, rate, delay=True, verb="change")
    assert changed[4:10] == ["change", "dev", "hls1", "parent", "1:", "handle"]
    assert plan.netem_command(1, 2.5)[5:] == [
        "dev", "hls1", "root", "handle", "1:", "netem", "delay", "2.5ms",
    ]  # fmt: skip


def test_sshfs_runs_here_and_its_ssh_in_the_client_namespace(tmp_path: Path) -> None:
    command = plan.sshfs_command(3, Path("/srv/x"), tmp_path)
    assert command[:4] == ["sshfs", "root@10.201.3.1:/srv/x", "/mnt/harness-lab/client3", "-f"]
    assert "ssh_command=ip netns exec hlab-client3 ssh" in command
    options = command[-1].split(",")
    assert {"reconnect", "kernel_cache", "StrictHostKeyChecking=yes", "BatchMode=yes"} <= set(
        options
    )
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in options


def test_sshd_listens_on_the_storage_ends_only_and_takes_keys_only(tmp_path: Path) -> None:
    config = plan.sshd_config(tmp_path, 2).splitlines()
    assert [line for line in config if line.startswith("ListenAddress")] == [
        "ListenAddress 10.201.1.1:22",
        "ListenAddress 10.201.2.1:22",
    ]
    for line in ("PasswordAuthentication no", "UseDNS no", "Subsystem sftp internal-sftp"):
        assert line in config
    assert "PermitRootLogin prohibit-password" in config
    assert plan.known_hosts_line(2, "ssh-ed25519 AAAAkey harness-lab\n") == (
        "10.201.1.1,10.201.2.1 ssh-ed25519 AAAAkey\n"
    )


def _state(export: Path, *points: Path) -> LabState:
    return LabState(
        phase="up",
        started_at="2026-01-01T00:00:00Z",
        export=export,
        export_device="vda",
        clients=len(points),
        mounts=[
            LabMount(client=n, mount_point=point, source="root@x:/e", command=["sshfs"])
            for n, point in enumerate(points, 1)
        ],
    )


def test_the_state_file_round_trips_and_a_foreign_version_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    assert read_state(tmp_path) is None
    state = _state(tmp_path / "export", tmp_path / "m1")
    write_state(state, tmp_path)
    assert read_state(tmp_path) == state
    text = (tmp_path / "state.json").read_text()
    (tmp_path / "state.json").write_text(text.replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(HarnessError, match="format version 9, this harness reads version 1"):
        read_state(tmp_path)
    (tmp_path / "state.json").write_text(text.replace('"clients": 1', '"clients": "one"'))
    with pytest.raises(HarnessError, match=r"state.json: clients: "):
        read_state(tmp_path)


def test_export_side_maps_a_mount_path_to_the_export_and_nothing_else(tmp_path: Path) -> None:
    export, point = tmp_path / "export", tmp_path / "mnt" / "client1"
    point.mkdir(parents=True)
    assert export_side(point / "a.png", tmp_path) is None  # no lab up
    write_state(_state(export, point), tmp_path)
    assert export_side(point / "data" / "a.png", tmp_path) == export / "data" / "a.png"
    assert export_side(tmp_path / "mnt" / "client2" / "a.png", tmp_path) is None
    assert export_side(tmp_path / "elsewhere", tmp_path) is None
    (tmp_path / "link").symlink_to(point)  # a dataset folder that is a link into the mount
    assert export_side(tmp_path / "link" / "a.png", tmp_path) == export / "a.png"


def test_not_root_is_one_line_and_exit_2_before_anything_is_made(
    monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert (
        lab.lab_unavailable() == "needs root (network namespaces, veth links, tc and FUSE mounts)"
    )
    done = cli("lab", "up")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"lab not available: {lab.lab_unavailable()}"]


def test_a_missing_tool_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(lifecycle.shutil, "which", lambda tool: None if tool == "sshfs" else tool)
    assert lab.lab_unavailable() == ("missing packages: sshfs (make system-tools installs them)")


def test_bad_options_are_refused_in_one_line(cli) -> None:
    for args, message in (
        (("--clients", "5"), "error: --clients 5: must be 1 to 4"),
        (("--rate", "9mbps"), "error: rate '9mbps': expected a number"),
        (("--delay-ms", "-1"), "error: --delay-ms -1: must be more than 0"),
    ):
        done = cli("lab", "up", *args)
        assert done.returncode == 2, args
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(message), args


def test_a_listening_socket_is_found_in_the_namespace_table_of_a_process() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not system.listening(os.getpid(), "127.0.0.1", port)
        server.listen()
        assert system.listening(os.getpid(), "127.0.0.1", port)


# --- the real lab ---------------------------------------------------------------------------


@pytest.fixture
def lab_machine() -> Iterator[None]:
    """The lab may be made here and is always taken down after; a lab someone left up is not
    touched (the test skips)."""
    reason = lab.lab_unavailable()
    if reason:
        pytest.skip(f"lab not available: {reason}")
    if read_state() is not None or system.lab_namespaces():
        pytest.skip("a lab is up already (harness lab down first)")
    try:
        yield
    finally:
        assert lab.down() == []


def _nothing_left(pids: list[tuple[int, int]]) -> None:
    assert system.lab_namespaces() == []
    assert list(plan.NETNS_ETC.glob(f"{plan.NAMESPACE_PREFIX}*")) == []  # their /etc/hosts
    assert system.mounts_under(plan.MOUNT_ROOT) == []
    assert not plan.MOUNT_ROOT.exists()
    assert [pid for pid, ticks in pids if system.alive(pid, ticks)] == []
    assert read_state() is None


@pytest.mark.slow
def test_the_lab_carries_reads_over_the_limited_link_and_leaves_nothing(
    lab_machine: None, tmp_path: Path, cli
) -> None:
    export = tmp_path / "export"
    done = cli("lab", "up", "--clients", "1", "--rate", "50mbit", "--export", export)
    assert done.returncode == 0, done.stderr
    state = read_state()
    assert state is not None and state.phase == "up"
    assert [p.role for p in state.processes] == ["sshd", "node_exporter", "sshfs client1"]

    size = 4 * 10**6
    (export / "blob").write_bytes(os.urandom(size))
    through_mount = plan.mount_point(1) / "blob"
    assert export_side(through_mount) == export / "blob"
    evict([through_mount, export / "blob"])
    received_before, _ = system.interface_bytes("hlab-client1", "hlc1")
    subprocess.run(
        ["ip", "netns", "exec", "hlab-client1", "cat", str(through_mount)],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    received_after, _ = system.interface_bytes("hlab-client1", "hlc1")
    assert received_after - received_before >= size

    url = state.exporter_url
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode())"
    metrics = subprocess.run(
        ["ip", "netns", "exec", "hlab-client1", sys.executable, "-c", fetch],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert "node_disk_read_bytes_total" in metrics

    assert cli("lab", "rate", "10mbit").returncode == 0
    qdiscs = system.run(["tc", "-n", "hlab-storage", "qdisc", "show", "dev", "hls1"])
    assert "tbf" in qdiscs and "rate 10Mbit" in qdiscs
    assert read_state().links[0].rate == "10mbit"  # type: ignore[union-attr]
    status = cli("lab", "status")
    assert "10mbit" in status.stdout and "(mounted)" in status.stdout

    pids = [(p.pid, p.start_ticks) for p in state.processes]
    done = cli("lab", "down")
    assert done.returncode == 0, done.stderr
    _nothing_left(pids)
    assert (export / "blob").exists()  # the export's data stays
    assert cli("lab", "down").returncode == 0  # idempotent
    assert cli("lab", "status").stdout.strip() == "down"


@pytest.mark.slow
def test_a_delay_needs_netem_and_a_refused_up_leaves_nothing(
    lab_machine: None, tmp_path: Path, cli
) -> None:
    done = cli("lab", "up", "--delay-ms", "5", "--export", tmp_path / "export")
    if done.returncode == 0:  # a kernel with netem: the delay is there, under the rate
        qdiscs = system.run(["tc", "-n", "hlab-storage", "qdisc", "show", "dev", "hls1"])
        assert "netem" in qdiscs and "delay 5ms" in qdiscs and "tbf" in qdiscs
        return
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("lab not available: --delay-ms needs tc's netem qdisc")
    _nothing_left([])


def test_every_lab_namespace_names_the_lab_hosts_in_its_etc_hosts() -> None:
    text = plan.hosts_file(2, "127.0.0.1 localhost\n")
    assert text.splitlines() == [
        "127.0.0.1 localhost",
        "# harness lab",
        "10.201.1.1 storage",
        "10.201.2.1 storage-link2",
        "10.201.1.2 client1",
        "10.201.2.2 client2",
    ]
