"""Multi-process training under torchrun: one process per GPU (or CPU process), DDP.

torchrun (or the elastic launcher of emulated accelerators) sets RANK, WORLD_SIZE and
LOCAL_RANK; without them the run is a single process and nothing here does anything. Collective
calls carry a timeout (``training.collective_timeout_s``), so that when a rank dies the others
fail within it instead of hanging (torchrun also stops the remaining ranks).
"""

from __future__ import annotations

import os
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
