"""Multi-process training under torchrun: one process per GPU (or CPU process), DDP.

torchrun (or the elastic launcher of emulated accelerators) sets RANK, WORLD_SIZE and
LOCAL_RANK; without them the run is a single process and nothing here does anything. Collective
calls carry a timeout (``training.collective_timeout_s``), so that when a rank dies the others
fail within it instead of hanging (torchrun also stops the remaining ranks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_ranks(use_nccl: bool, timeout_s: float) -> Ranks:
    """Join the process group torchrun describes (NCCL for real CUDA training, else gloo); a
    collective that waits longer than ``timeout_s`` for a partner fails instead of hanging."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if use_nccl:
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_nccl else "gloo", timeout=timedelta(seconds=timeout_s)
        )
    return ranks


@dataclass(frozen=True)
class HostIdentity:
    """Which host a rank runs on. Hosts in containers or network namespaces often share one
    host name, so a host is its name, its address and torchrun's node rank together."""

    name: str  # HARNESS_HOST_NAME, else the host name
    address: str  # this host's address towards the job's store (or GLOO_SOCKET_IFNAME's)
    node_rank: int  # torchrun's GROUP_RANK
    rank: int  # the global rank that reported it

    def label(self) -> str:
        return f"{self.name} ({self.address}, node rank {self.node_rank})"


def this_host(rank: int) -> HostIdentity:
    """The identity of the host this rank runs on (see :class:`HostIdentity`)."""
    name = os.environ.get("HARNESS_HOST_NAME") or socket.gethostname()
    node_rank = int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", "0")))
    return HostIdentity(name, _host_address(), node_rank, rank)


def _host_address() -> str:
    """GLOO_SOCKET_IFNAME's address where it is set; else the source address of the route to
    the job's store (MASTER_ADDR), which is the interface the ranks talk over."""
    interface = os.environ.get("GLOO_SOCKET_IFNAME", "").split(",")[0]
    if interface:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                request = struct.pack("256s", interface.encode()[:15])
                answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
                return socket.inet_ntoa(answer[20:24])
        except OSError:
            pass
    master = os.environ.get("MASTER_ADDR", "127.0.0.1")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((master, int(os.environ.get("MASTER_PORT", "29500"))))  # no packet
            return str(probe.getsockname()[0])
    except OSError:
        return master


def join_hosts(ranks: Ranks) -> list[HostIdentity]:
    """Every rank's host, in rank order, on every rank (at start: all ranks are there)."""
    own = this_host(ranks.rank)
    if not ranks.distributed:
        return [own]
    found: list[Any] = [None] * ranks.world
    dist.all_gather_object(found, own)
    return found


ENDED_KEY = "harness/ended/"


def note_ended(ranks: Ranks, run_id: str) -> None:
    """Tell the job's store that this rank's loop has ended (however): a rank that never says
    so by the time rank 0 gathers the records is on a lost or hung host."""
    if not ranks.distributed:
        return
    # the store's host gone: rank 0 is lost too, and nobody writes results
    with contextlib.suppress(Exception):
        _store().set(f"{ENDED_KEY}{run_id}/{ranks.rank}", "1")


def silent_ranks(ranks: Ranks, run_id: str, wait_s: float) -> list[int]:
    """The ranks that have not said their loop ended in run ``run_id`` (one torchrun job may
    hold several: ``--repeat``), after waiting up to ``wait_s`` for them (rank 0, after a
    collective with a partner failed)."""
    if not ranks.distributed:
        return []
    store = _store()
    deadline = time.monotonic() + wait_s
    while True:
        silent = [r for r in range(ranks.world) if not store.check([f"{ENDED_KEY}{run_id}/{r}"])]
        if not silent or time.monotonic() >= deadline:
            return silent
        time.sleep(0.1)


def _store() -> Any:
    """The job's key-value store (torchrun's, that every rank joined at start)."""
    return dist.distributed_c10d._get_default_store()


job_store = _store  # for the controllers of a capacity search (``harness.capacity.hosts``)

JOINED_KEY = "harness/joined/"


def missing_at_join(store: Any, launch: str, rank: int, count: int, timeout_s: float) -> list[int]:
    """Say in ``store`` that node ``rank`` joined ``launch``, and wait up to ``timeout_s`` for the
    other ``count`` - 1: the node ranks that had not joined by then (none: all are there). A
    launcher's own rendezvous would wait as long, then fail without saying which one is missing."""
    store.set(f"{JOINED_KEY}{launch}/{rank}", "1")
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [r for r in range(count) if not store.check([f"{JOINED_KEY}{launch}/{r}"])]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.1)


def broadcast(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, ranks: Ranks) -> list[Any] | None:
    """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
    if not ranks.distributed:
        return [value]
    gathered: list[Any] | None = [None] * ranks.world if ranks.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def shutdown(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()
