"""Emulated accelerators: load the storage at the rate of N GPUs from a machine that has fewer.

An emulated step waits for its batch exactly as a real one does (same backend, workers, decode,
collate, masks; the pinned copy to the GPU where there is one), then spends a compute time drawn
from a profile (``harness.train.profiles``) instead of running the U-Net, and records the time
actually spent. With ``training.accelerators: N`` the run starts N ranks on this host through
torch.distributed's elastic launcher (what torchrun uses), each with its own DataLoader workers
and its own share of the samples; after each step the ranks vote on stopping with one all-reduce
(``training.sync: barrier``: the stand-in for the gradient all-reduce, timed on its own), so all
of them run the same steps. The host's collectors run once, in the launching process, and see
every rank and worker as its process tree.

Each rank writes what it measured to ``<run>/ranks/rank<N>.pkl`` when it stops, however it stops;
the launching process merges the files into one result. A rank that dies or stops answering (a
kill, SIGSTOP, a debugger) ends the run within ``training.collective_timeout_s``: the ranks that
notice name it, and a stopped rank is ended so that nothing waits for it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.errors import one_line
from harness.pipeline.batch import Batch
from harness.train.loop import Device, RunFailed, StepFunction
from harness.train.profiles import StepTimes

RANKS_FOLDER = "ranks"
PARTNER_FAILED = "an emulated accelerator's partner"  # how a rank reports another's failure


def emulated_step(times: StepTimes, device: Device) -> StepFunction:
    """A step that copies the batch to the GPU where there is one (as a real step does), then
    waits out a compute time drawn from the profile, counted from the batch's arrival."""
    import torch

    def step(batch: Batch) -> None:
        deadline = time.monotonic() + times.next()
        if device.is_cuda:
            batch.image.to(device.torch_device, non_blocking=True)
            batch.mask.to(device.torch_device, non_blocking=True)
            torch.cuda.current_stream(device.torch_device).synchronize()
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return None

    return step


def stop_vote(timeout_s: float, folder: Path) -> Any:
    """The per-step collective: one all-reduce (MAX) of this rank's wish to stop. A partner that
    died or stopped answering raises ``RunFailed`` naming it."""
    import torch
    import torch.distributed as dist

    flag = torch.zeros(1, dtype=torch.int32)

    def vote(stop: bool) -> bool:
        flag.fill_(int(stop))
        try:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        except RuntimeError as exc:
            if "DataLoader worker" in str(exc):  # this rank's own pipeline, not a partner
                raise
            raise RunFailed(_partners_failed(folder, timeout_s, exc)) from None
        return bool(flag.item())

    return vote


def write_pid(folder: Path, rank: int) -> None:
    ranks = folder / RANKS_FOLDER
    ranks.mkdir(parents=True, exist_ok=True)
    (ranks / f"rank{rank}.pid").write_text(str(os.getpid()))


def _partners_failed(folder: Path, timeout_s: float, error: BaseException) -> str:
    """Which partner ranks are gone or stopped (ending the stopped ones), as one line."""
    found = []
    me = os.getpid()
    for path in sorted((folder / RANKS_FOLDER).glob("rank*.pid")):
        rank = path.stem.removeprefix("rank")
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            continue
        if pid == me:
            continue
        state = _process_state(pid)
        if state is None or state == "Z":
            found.append(f"rank {rank} (pid {pid}) died")
        elif state in ("T", "t"):
            with contextlib.suppress(ProcessLookupError):  # the launcher may have reaped it
                os.kill(pid, signal.SIGKILL)  # nothing can wait for it; its records are lost
            found.append(f"rank {rank} (pid {pid}) was stopped (SIGSTOP or a debugger); ended it")
    what = "; ".join(found) or f"a partner rank failed ({one_line(error, 200)})"
    timed_out = "timeout" in str(error).lower() or "timed out" in str(error).lower()
    how = (
        f"stopped answering within training.collective_timeout_s={timeout_s:g} s"
        if timed_out
        else "failed"
    )
    return f"{PARTNER_FAILED} {how}: {what}"


def _process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z, ...), None when there is no such
    process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def init_group(timeout_s: float) -> None:
    """Join the launcher's process group (gloo: emulated ranks exchange only a flag)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))


@dataclass
class RankResult:
    """What an emulated accelerator rank leaves in its file."""

    complete: bool
    reason: str | None
    exit_code: int
    records: Any  # harness.summary.RankRecords


def write_rank_result(folder: Path, rank: int, result: RankResult) -> None:
    path = folder / RANKS_FOLDER / f"rank{rank}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(pickle.dumps(result))
    temporary.replace(path)


def read_rank_results(folder: Path, ranks: range) -> dict[int, RankResult]:
    """The results ``ranks`` left (a rank killed outright leaves none)."""
    found = {}
    for rank in ranks:
        path = folder / RANKS_FOLDER / f"rank{rank}.pkl"
        if path.is_file():
            found[rank] = pickle.loads(path.read_bytes())
    return found
