"""The controllers of a capacity search: this host alone, or one per host under an outer
``torchrun --nnodes H --nproc-per-node 1``. The first host decides which count to probe; every
host runs its share of each probe and sends its results to the first.

A host that dies or hangs fails the controllers' next collective (at once for a closed
connection, after ``collective_timeout_s`` for a silent one). Which host it was is not in gloo's
error: every controller beats a counter in the job's store every ``HEARTBEAT_S``, and the hosts
whose counter stood still are the lost ones (``HostLost``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from harness.errors import HarnessError
from harness.run import Nodes
from harness.train.distributed import HostIdentity, job_store, this_host

T = TypeVar("T")

HEARTBEAT_S = 0.5  # how often each controller says it is alive
HEARTBEAT_KEY = "harness/capacity/alive/"
# A counter that has not moved in this long belongs to a lost host (several beats: a busy host
# still beats, its thread needs the GIL only for a moment).
STILL_S = 4 * HEARTBEAT_S


class HostLost(Exception):
    """A collective of the controllers failed: ``lost`` are the hosts that stopped beating (empty
    when none could be told apart, e.g. this host lost the first one's store)."""

    def __init__(self, lost: list[HostIdentity], error: str) -> None:
        self.lost, self.error = lost, error
        super().__init__(self.who())

    def who(self) -> str:
        """``host client2 (10.0.0.2, node rank 1)``, or what failed when no host is known."""
        if not self.lost:
            return f"a host (the controllers' exchange failed: {self.error})"
        plural = "s" if len(self.lost) > 1 else ""
        return f"host{plural} " + ", ".join(host.label() for host in self.lost)


@dataclass
class Hosts:
    """This host's place among the controllers (``count`` 1: alone)."""

    count: int = 1
    rank: int = 0
    master: str = ""  # host:port of the outer torchrun's store; probes use the ports after it
    launches: int = 0
    identities: list[HostIdentity] = field(default_factory=list)  # every host's, by node rank
    lost: bool = False  # a collective failed: leave without waiting for the others
    _beating: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_environment(cls, timeout_s: float) -> Hosts:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(identities=[this_host(0)])
        if os.environ.get("LOCAL_WORLD_SIZE", "1") != "1":
            raise HarnessError(
                "harness capacity under torchrun: one controller per host "
                "(--nproc-per-node 1); it launches the accelerators itself"
            )
        import torch.distributed as dist  # only under torchrun

        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        master = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        rank = int(os.environ["RANK"])
        identities: list[HostIdentity] = [this_host(rank)] * world
        dist.all_gather_object(identities, this_host(rank))
        hosts = cls(world, rank, master, identities=identities)
        hosts._start_heartbeat()
        return hosts

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def here(self) -> HostIdentity:
        return self.identities[self.rank]

    def share(self, value: T) -> T:
        """The first host's ``value`` on every host."""
        if self.count == 1:
            return value
        import torch.distributed as dist

        box = [value]
        self._together(lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def gather(self, value: T) -> list[T]:
        """Every host's ``value`` on the first (an empty list on the others)."""
        if self.count == 1:
            return [value]
        import torch.distributed as dist

        found: list[T] | None = [value] * self.count if self.is_first else None
        self._together(lambda: dist.gather_object(value, found, dst=0))
        return found or []

    def _together(self, collective: Callable[[], None]) -> None:
        """Run a collective of the controllers; a failure is a lost host, named."""
        try:
            collective()
        except RuntimeError as exc:  # gloo: connection closed, or timed out waiting
            self.lost = True
            error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise HostLost(self._silent(), error) from None

    def _start_heartbeat(self) -> None:
        store, key = job_store(), f"{HEARTBEAT_KEY}{self.rank}"

        def beat() -> None:
            while not self._beating.wait(HEARTBEAT_S):
                try:
                    store.add(key, 1)
                except Exception:  # the store's host is gone: nothing left to tell
                    return

        threading.Thread(target=beat, name="capacity-heartbeat", daemon=True).start()

    def _silent(self) -> list[HostIdentity]:
        """The other hosts whose heartbeat has stood still for ``STILL_S``; the first host when
        its store cannot be reached."""
        others = [r for r in range(self.count) if r != self.rank]
        try:
            store = job_store()
            before = {r: store.add(f"{HEARTBEAT_KEY}{r}", 0) for r in others}
            time.sleep(STILL_S)
            after = {r: store.add(f"{HEARTBEAT_KEY}{r}", 0) for r in others}
        except Exception:  # the store lived on the first host
            return [] if self.is_first else [self.identities[0]]
        return [self.identities[r] for r in others if after[r] == before[r]]

    def close(self) -> None:
        """Leave the controllers' group together (a host that just exits aborts the others);
        after a lost host, leave at once."""
        if self.count == 1:
            return
        import torch.distributed as dist

        self._beating.set()
        try:
            if not self.lost:
                dist.barrier()
        except RuntimeError:  # a host that is gone: leave anyway
            pass
        finally:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()

    def nodes(self) -> Nodes | None:
        """A fresh rendezvous for the next launch of all hosts' ranks (None: this host only)."""
        if self.count == 1:
            return None
        self.launches += 1
        address, port = self.master.rsplit(":", 1)
        endpoint = f"{address}:{int(port) + self.launches}"
        return Nodes(self.count, self.rank, endpoint, tuple(h.label() for h in self.identities))
