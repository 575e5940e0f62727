"""How close an emulated step comes to the compute time it drew.

    python benchmarks/bench_step_timing.py [--steps N] [--strict]

For each constant step time (0.2, 0.5, 1, 3.5 and 10 ms) ``--steps`` steps of the harness's own
emulated step (``harness.train.emulated.EmulatedStep`` on the CPU device, timed as the training
loop times it: ``time.monotonic`` around the call), then as many of the plain ``time.sleep`` to
the same deadline that the step used before (the "before" column). Per step time: the p50 and
p99 of (measured - drawn) in µs, the p50 relative to the drawn time, and the CPU the loop's
thread spent per step and the emulated step's spin per step (the spin's cost; a plain sleep
costs almost none).

Target (``--strict`` exits 1 on a miss): the emulated step's p50 error is at most 10 µs at every
step time from 0.2 ms up. No data, no workers: the steps run back to back in this process, so the
machine's other load shows in the tails (the p99), not in the target.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from harness.pipeline.batch import Batch
from harness.train.emulated import EmulatedStep
from harness.train.loop import Device
from harness.train.profiles import ComputeTimes, Profile, ProfileSettings, StepTimes

STEP_MS = (0.2, 0.5, 1.0, 3.5, 10.0)
TARGET_P50_US = 10.0


def constant_times(step_s: float) -> StepTimes:
    """A profile of one constant step time (only its mean: every draw is that time)."""
    settings = ProfileSettings(
        batch_size=1, crop=8, width=8, depth=2, classes=5, precision="fp32", optimizer="adamw"
    )
    profile = Profile(
        name=f"flat-{step_s * 1e3:g}ms",
        device="none (benchmarks/bench_step_timing.py)",
        settings=settings,
        step_s=[],
        mean_step_s=step_s,
        flops_per_batch=None,
        how="a constant step time for a benchmark",
    )
    return StepTimes(ComputeTimes(profile, 1.0, None), seed=0)


def plain_sleep(step_s: float) -> Callable[[Batch], None]:
    """The step as it was: sleep to a deadline counted from the call."""

    def step(_batch: Batch) -> None:
        deadline = time.monotonic() + step_s
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    return step


def timed(step: Callable[[Batch], None], batch: Batch, steps: int) -> tuple[np.ndarray, float]:
    """Measured step times (s), as the loop measures them, and the thread's CPU s per step."""
    measured = np.empty(steps)
    cpu_from = time.thread_time()
    for index in range(steps):
        arrived = time.monotonic()
        step(batch)
        measured[index] = time.monotonic() - arrived
    return measured, (time.thread_time() - cpu_from) / steps


def row(step_s: float, measured: np.ndarray, cpu_s: float) -> dict[str, float]:
    error_us = (measured - step_s) * 1e6
    return {
        "p50_us": float(np.percentile(error_us, 50)),
        "p99_us": float(np.percentile(error_us, 99)),
        "p50_pct": float(np.percentile(error_us, 50)) / (step_s * 1e6) * 100,
        "early": int((measured < step_s).sum()),
        "cpu_us": cpu_s * 1e6,
    }


def load() -> str:
    return f"load {Path('/proc/loadavg').read_text().split()[0]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per step time and method")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    batch = Batch.untimed(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 8, 8), 0)
    device = Device(torch.device("cpu"), "fp32")
    print(
        f"emulated step vs plain time.sleep, {args.steps} steps each, error = measured - drawn "
        f"({load()})"
    )
    header = f"{'p50 µs':>8s} {'p99 µs':>8s} {'p50 %':>7s} {'CPU µs':>7s}"
    print(
        f"  {'step':>7s}   emulated step: {header} {'spin µs':>7s} {'margin µs':>9s}   "
        f"plain sleep: {header}"
    )
    missed = []
    for step_ms in STEP_MS:
        step_s = step_ms / 1e3
        emulated = EmulatedStep(constant_times(step_s), device)
        new = row(step_s, *timed(emulated, batch, args.steps))
        spin_us = emulated.waiter.spun_ns / args.steps / 1e3
        old = row(step_s, *timed(plain_sleep(step_s), batch, args.steps))
        print(
            f"  {step_ms:5.1f} ms   {'':15s}{new['p50_us']:8.1f} {new['p99_us']:8.1f} "
            f"{new['p50_pct']:7.2f} {new['cpu_us']:7.1f} "
            f"{spin_us:7.1f} {emulated.waiter.margin_ns / 1e3:9.1f}"
            f"   {'':13s}{old['p50_us']:8.1f} {old['p99_us']:8.1f} {old['p50_pct']:7.2f} "
            f"{old['cpu_us']:7.1f}",
            flush=True,
        )
        if new["early"]:
            missed.append(f"{step_ms:g} ms: {new['early']} steps ended before their drawn time")
        if new["p50_us"] > TARGET_P50_US:
            missed.append(f"{step_ms:g} ms: p50 error {new['p50_us']:.1f} µs > {TARGET_P50_US:g}")
    print(
        "  (CPU µs: the loop thread's CPU per step; spin µs: the emulated step's spin per step, "
        "mean; margin: its learnt sleep margin at the end)"
    )
    print(f"\ntarget: p50 error <= {TARGET_P50_US:g} µs from 0.2 ms up, never early")
    for miss in missed:
        print(f"  MISSED {miss}")
    if not missed:
        print("  ok")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
