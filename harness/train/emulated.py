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
import math
import os
import pickle
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.errors import one_line
from harness.files import atomic_write
from harness.pipeline.batch import Batch
from harness.train.loop import Device, RunFailed
from harness.train.profiles import StepTimes

RANKS_FOLDER = "ranks"
PARTNER_FAILED = "an emulated accelerator's partner"  # how a rank reports another's failure


class DeadlineWaiter:
    """Returns at a deadline of ``time.monotonic_ns()`` (the loop's clock), never before it: sleeps
    to a margin before the deadline, then spins on the clock for the rest.

    Why: ``time.sleep`` wakes up late by a roughly fixed amount (the kernel's default timer slack
    of 50 µs plus the scheduler's wake-up: ~65-75 µs on an idle machine, a p90 of ~85-120 µs with
    the pipeline's processes about), which made a 0.5 ms step 27 % long and counted the excess as
    compute. The margin is the 90th percentile of the wake-ups this waiter has seen, tracked one
    step at a time (``_learn``), so that about 9 sleeps in 10 wake before the deadline; it starts
    at 100 µs (the typical wake-up and some) and stays within [20 µs, 500 µs]. A percentile
    rather than a mean and spread: a preempted sleep (milliseconds late on busy cores) moves it by
    a few µs, not to the cap. A wake-up later than the margin just ends that step late, as the
    plain sleep did; spinning longer would not help that.

    What it costs: the spin is CPU time of the loop's thread, at most the margin per step and
    typically margin - wake-up (some tens of µs: under 10 % of a 0.5 ms step, under 1 % of a
    3.5 ms one); a step shorter than the margin is spun whole. The client's CPU counts in the
    capacity limiter, hence a learnt margin rather than a generous fixed one. The spin holds the
    GIL meanwhile (other threads of the process wait at most the margin)."""

    FIRST_MARGIN_NS = 100_000
    MIN_MARGIN_NS = 20_000
    MAX_MARGIN_NS = 500_000
    QUANTILE = 0.9
    STEP_NS = 10_000  # how far one wake-up moves the margin: up 9 µs when late, down 1 µs

    def __init__(self) -> None:
        self.margin_ns = self.FIRST_MARGIN_NS
        self.spun_ns = 0  # the spins' total, for benchmarks/bench_step_timing.py

    def wait_until(self, deadline_ns: int) -> None:
        now = time.monotonic_ns()
        if deadline_ns - now > self.margin_ns:
            wake_at = deadline_ns - self.margin_ns
            time.sleep((wake_at - now) / 1e9)
            now = time.monotonic_ns()
            self._learn(late=now > deadline_ns)
        else:  # no sleep to learn from: let the margin drift down, or it could stay above the step
            self._learn(late=False)
        spin_from = now
        while now < deadline_ns:
            now = time.monotonic_ns()
        self.spun_ns += now - spin_from

    def _learn(self, late: bool) -> None:
        """One step of a streaming quantile estimate: up by QUANTILE x STEP_NS after a wake-up
        past the deadline, down by the rest otherwise, so it settles where QUANTILE of them are
        in time."""
        change = self.QUANTILE * self.STEP_NS if late else -(1 - self.QUANTILE) * self.STEP_NS
        margin = round(self.margin_ns + change)
        self.margin_ns = min(max(margin, self.MIN_MARGIN_NS), self.MAX_MARGIN_NS)


class EmulatedStep:
    """A step that copies the batch to the GPU where there is one (as a real step does), then
    waits out a compute time drawn from the profile, counted from the batch's arrival. ``drawn_s``
    is the time drawn for the last step: the loop records it beside the measured one
    (``harness.train.loop.DrawnStep``)."""

    def __init__(self, times: StepTimes, device: Device) -> None:
        self._times = times
        self._device = device
        self.waiter = DeadlineWaiter()
        self.drawn_s = float("nan")

    def __call__(self, batch: Batch) -> None:
        self.drawn_s = self._times.next()
        # rounded up: the deadline is never before the drawn time
        deadline_ns = time.monotonic_ns() + math.ceil(self.drawn_s * 1e9)
        if self._device.is_cuda:
            import torch

            batch.image.to(self._device.torch_device, non_blocking=True)
            batch.mask.to(self._device.torch_device, non_blocking=True)
            torch.cuda.current_stream(self._device.torch_device).synchronize()
        self.waiter.wait_until(deadline_ns)


def emulated_step(times: StepTimes, device: Device) -> EmulatedStep:
    return EmulatedStep(times, device)


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
    with atomic_write(path) as handle:
        handle.write(pickle.dumps(result))


def read_rank_results(folder: Path, ranks: range) -> dict[int, RankResult]:
    """The results ``ranks`` left (a rank killed outright leaves none)."""
    found = {}
    for rank in ranks:
        path = folder / RANKS_FOLDER / f"rank{rank}.pkl"
        if path.is_file():
            found[rank] = pickle.loads(path.read_bytes())
    return found
