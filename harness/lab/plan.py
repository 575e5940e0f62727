"""The lab's names, addresses and command lines (pure: nothing here runs anything).

Everything the lab makes has a fixed name, so that ``down`` can find what a crashed ``up`` left
even without its state file: namespaces start with ``hlab-``, mounts live under
``/mnt/harness-lab``, the state folder is ``/run/harness-lab``. Client N (1..4) is the namespace
``hlab-clientN``, linked to ``hlab-storage`` by the veth pair ``hlsN`` (storage end,
10.201.N.1/24) <-> ``hlcN`` (client end, 10.201.N.2/24).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

NAMESPACE_PREFIX = "hlab-"
STORAGE_NAMESPACE = "hlab-storage"
MAX_CLIENTS = 4
SSH_PORT = 22
EXPORTER_PORT = 9100
PREFIX_LENGTH = 24

DEFAULT_EXPORT = Path("/srv/harness-lab/export")
MOUNT_ROOT = Path("/mnt/harness-lab")
STATE_DIR = Path("/run/harness-lab")
STATE_FILE = "state.json"
# sshd refuses to start without its privilege separation folder; the openssh-server package makes
# it at boot, a bare container may not have it (then the lab makes it and removes it again).
SSHD_PRIVSEP_DIR = Path("/run/sshd")

# What ``up`` needs on PATH (or at the path given), with the package that brings it (Debian).
TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "/usr/sbin/sshd": "openssh-server",
    "sshfs": "sshfs",
    "fusermount3": "fuse3",
    "prometheus-node-exporter": "prometheus-node-exporter",
}


NETNS_ETC = Path("/etc/netns")  # ``ip netns exec NAME`` binds /etc/netns/NAME/* over /etc/*


def hosts_file(clients: int, base: str) -> str:
    """The /etc/hosts every lab namespace sees: this machine's, plus a name for each lab address
    (``storage``, ``client1``...): a process there that asks the name of a peer's address
    (torch's rendezvous does, for each connection) gets it at once instead of a warning."""
    lines = [base.rstrip("\n"), "# harness lab", f"{storage_address(1)} storage"]
    lines += [f"{storage_address(n)} storage-link{n}" for n in range(2, clients + 1)]
    lines += [f"{client_address(n)} client{n}" for n in range(1, clients + 1)]
    return "\n".join(lines) + "\n"


def client_namespace(client: int) -> str:
    return f"{NAMESPACE_PREFIX}client{client}"


def storage_interface(client: int) -> str:
    return f"hls{client}"


def client_interface(client: int) -> str:
    return f"hlc{client}"


def storage_address(client: int) -> str:
    return f"10.201.{client}.1"


def client_address(client: int) -> str:
    return f"10.201.{client}.2"


def mount_point(client: int) -> Path:
    return MOUNT_ROOT / f"client{client}"


def exporter_url() -> str:
    # On client 1's link: every client reaches it (the storage host forwards between links).
    return f"http://{storage_address(1)}:{EXPORTER_PORT}/metrics"


# --- link rate ----------------------------------------------------------------------------------

# tc's units, decimal as tc reads them (1 kbit = 1000 bit/s). tc's "bps" means bytes per second,
# a trap, so only the unambiguous bit units are taken.
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
MIN_RATE_BITS = 64_000  # below this an sshfs read times out rather than crawls
MAX_RATE_BITS = 100 * 10**9

# tbf: the bucket holds 10 ms of the rate (at least 32 KiB: a few full-size packets plus a
# 64 KiB GSO segment split by tbf), and a packet waits at most 50 ms in the queue before it is
# dropped (TCP's backpressure keeps the queue far shorter; drops are counted by tc -s).
BURST_S = 0.010
MIN_BURST_BYTES = 32 * 1024
QUEUE_LATENCY_MS = 50


@dataclass(frozen=True)
class Rate:
    """A link rate as given (``50mbit``) and in bits per second."""

    text: str
    bits_per_s: int

    @property
    def burst_bytes(self) -> int:
        return max(MIN_BURST_BYTES, round(self.bits_per_s / 8 * BURST_S))


def parse_rate(text: str) -> Rate:
    """``100mbit``, ``1.5gbit``, ``512kbit`` (decimal, as tc reads them); a one-line error
    naming the value otherwise."""
    match = _RATE.match(text)
    if not match:
        raise HarnessError(
            f"rate {text!r}: expected a number and a unit of bit, kbit, mbit or gbit "
            "(e.g. 100mbit; decimal: 1 mbit = 10^6 bit/s)"
        )
    bits = round(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])
    if not MIN_RATE_BITS <= bits <= MAX_RATE_BITS:
        raise HarnessError(f"rate {text!r}: must be between 64kbit and 100gbit")
    return Rate(f"{match.group(1)}{match.group(2).lower()}", bits)


def check_delay(delay_ms: float) -> None:
    if not 0 < delay_ms <= 10_000:
        raise HarnessError(f"--delay-ms {delay_ms:g}: must be more than 0 and at most 10000")


# The storage-side qdiscs: tbf is the root, or netem's child when a delay is asked for (netem
# first, then the rate), so that changing the rate replaces tbf alone and keeps the delay.
TBF_HANDLE = "2:"
NETEM_HANDLE = "1:"


def tbf_command(client: int, rate: Rate, *, delay: bool, verb: str = "add") -> list[str]:
    """``tc`` adding (``verb="change"``: changing) the rate limit on the storage end of client
    ``client``'s link, i.e. on what the client reads."""
    parent = ["parent", NETEM_HANDLE] if delay else ["root"]
    return [
        "tc", "-n", STORAGE_NAMESPACE, "qdisc", verb, "dev", storage_interface(client),
        *parent, "handle", TBF_HANDLE, "tbf", "rate", f"{rate.bits_per_s}bit",
        "burst", str(rate.burst_bytes), "latency", f"{QUEUE_LATENCY_MS}ms",
    ]  # fmt: skip


def netem_command(client: int, delay_ms: float) -> list[str]:
    """``tc`` delaying every packet the storage host sends to client ``client`` by
    ``delay_ms`` (the round trip grows by that much)."""
    return [
        "tc", "-n", STORAGE_NAMESPACE, "qdisc", "add", "dev", storage_interface(client),
        "root", "handle", NETEM_HANDLE, "netem", "delay", f"{delay_ms:g}ms",
    ]  # fmt: skip


# --- the storage host's services ------------------------------------------------------------


def sshd_config(state_dir: Path, clients: int) -> str:
    """The storage host's sshd: on the storage ends of the links only, the lab's own host key
    and authorized key, root by key only, SFTP served in process, nothing else."""
    listen = "".join(
        f"ListenAddress {storage_address(n)}:{SSH_PORT}\n" for n in range(1, clients + 1)
    )
    return (
        "# The harness lab's storage host (harness lab up wrote it; harness lab down removes it)\n"
        f"{listen}"
        f"HostKey {state_dir / 'ssh_host_ed25519_key'}\n"
        f"AuthorizedKeysFile {state_dir / 'authorized_keys'}\n"
        "PidFile none\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding no\n"
        "PrintMotd no\n"
        "Subsystem sftp internal-sftp\n"
    )


def sshd_command(state_dir: Path) -> list[str]:
    # -D: stays in the foreground, so the pid the lab records is sshd's own; -e: logs to stderr
    # (the lab's log file) instead of syslog.
    return [
        "ip", "netns", "exec", STORAGE_NAMESPACE,
        "/usr/sbin/sshd", "-D", "-e", "-f", str(state_dir / "sshd_config"),
    ]  # fmt: skip


def exporter_command() -> list[str]:
    return [
        "ip", "netns", "exec", STORAGE_NAMESPACE, "prometheus-node-exporter",
        f"--web.listen-address={storage_address(1)}:{EXPORTER_PORT}",
    ]  # fmt: skip


# sshfs's choices, each on purpose:
# - reconnect, ServerAliveInterval=5, ServerAliveCountMax=3: a link throttled hard, or a restarted
#   sshd, costs a reconnect, not a dead mount; a gone server is noticed within 15 s.
# - kernel_cache: file pages stay in the client's page cache across opens (sshfs otherwise drops
#   them at every open), as NFS keeps them; the harness evicts them itself for a cold run.
# - BatchMode, IdentitiesOnly and a known_hosts holding the lab's own host key: never a prompt,
#   never another key, no "permanently added" warnings.
# Left at sshfs's defaults: one SSH connection per mount (max_conns=1), no compression (the
# bytes on the link are the file's bytes plus SSH/SFTP framing), sshfs's attribute cache.
SSHFS_OPTIONS = ("reconnect", "kernel_cache")


def ssh_options(state_dir: Path) -> list[str]:
    return [
        f"IdentityFile={state_dir / 'client_ed25519_key'}",
        "IdentitiesOnly=yes",
        "BatchMode=yes",
        f"UserKnownHostsFile={state_dir / 'known_hosts'}",
        "StrictHostKeyChecking=yes",
        "LogLevel=ERROR",
        "ServerAliveInterval=5",
        "ServerAliveCountMax=3",
    ]


def sshfs_command(client: int, export: Path, state_dir: Path) -> list[str]:
    """sshfs mounting the export on client ``client``'s mount point: sshfs itself runs here (so
    the mount is in this mount namespace, seen by every process), its ssh runs in the client's
    network namespace (so the bytes cross that client's link). ``ip netns exec`` would give
    sshfs a mount namespace of its own, and the mount would vanish with it. -f keeps sshfs in
    the foreground: the pid the lab records is the one serving the mount."""
    options = ",".join([*SSHFS_OPTIONS, *ssh_options(state_dir)])
    return [
        "sshfs", f"root@{storage_address(client)}:{export}", str(mount_point(client)), "-f",
        "-o", f"ssh_command=ip netns exec {client_namespace(client)} ssh",
        "-o", options,
    ]  # fmt: skip


def known_hosts_line(clients: int, host_public_key: str) -> str:
    hosts = ",".join(storage_address(n) for n in range(1, clients + 1))
    key_type, key = host_public_key.split()[:2]
    return f"{hosts} {key_type} {key}\n"
