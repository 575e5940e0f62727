"""The controllers of a capacity search: this host alone, or one per host under an outer
``torchrun --nnodes H --nproc-per-node 1``. The first host decides which count to probe; every
host runs its share of each probe and sends its results to the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from harness.errors import HarnessError
from harness.run import Nodes

T = TypeVar("T")


@dataclass
class Hosts:
    """This host's place among the controllers (``count`` 1: alone)."""

    count: int = 1
    rank: int = 0
    master: str = ""  # host:port of the outer torchrun's store; probes use the ports after it
    launches: int = 0

    @classmethod
    def from_environment(cls, timeout_s: float) -> Hosts:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if os.environ.get("LOCAL_WORLD_SIZE", "1") != "1":
            raise HarnessError(
                "harness capacity under torchrun: one controller per host "
                "(--nproc-per-node 1); it launches the accelerators itself"
            )
        import torch.distributed as dist  # only under torchrun

        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        master = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        return cls(world, int(os.environ["RANK"]), master)

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def share(self, value: T) -> T:
        """The first host's ``value`` on every host."""
        if self.count == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T]:
        """Every host's ``value`` on the first (an empty list on the others)."""
        if self.count == 1:
            return [value]
        import torch.distributed as dist

        found: list[T] | None = [value] * self.count if self.is_first else None
        dist.gather_object(value, found, dst=0)
        return found or []

    def close(self) -> None:
        """Leave the controllers' group together (a host that just exits aborts the others)."""
        if self.count == 1:
            return
        import torch.distributed as dist

        try:
            dist.barrier()
        except RuntimeError:  # a host that is gone: leave anyway
            pass
        finally:
            dist.destroy_process_group()

    def nodes(self) -> Nodes | None:
        """A fresh rendezvous for the next launch of all hosts' ranks (None: this host only)."""
        if self.count == 1:
            return None
        self.launches += 1
        address, port = self.master.rsplit(":", 1)
        return Nodes(self.count, self.rank, f"{address}:{int(port) + self.launches}")
