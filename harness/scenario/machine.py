"""Limits relative to the machine that runs a scenario, checked when a run starts.

Validation bounds hold on any machine (CI validates scenarios it will not run); these compare the
scenario with this one: far more workers than cores, or more memory in flight than it has. A
problem is a refusal (exit 2) unless ``--force``; a smaller one is a warning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import ScenarioError
from harness.scenario.model import CollageGenerate, LoadedScenario, Scenario

# Workers beyond this many per core only queue for the CPU and take memory; the study's
# platform ran 5 per core at most.
REFUSE_WORKERS_PER_CORE = 8


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_bytes: int  # physical memory
    available_bytes: int  # what can be taken without swapping

    @classmethod
    def here(cls) -> Machine:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return cls(int(cores or 1), total, _available_memory() or total)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def memory_in_flight(scenario: Scenario) -> int:
    """Bytes the input pipeline holds at once, at least: every batch in flight (uint8 images and
    masks) and, for encoded images, one whole decoded image per worker."""
    pipeline = scenario.pipeline
    per_sample = pipeline.crop * pipeline.crop * 4  # RGB + class mask, uint8
    in_flight = max(1, pipeline.workers) * pipeline.prefetch_factor + 1
    total = in_flight * pipeline.batch_size * per_sample
    generate = scenario.dataset.generate
    if isinstance(generate, CollageGenerate):
        whole = generate.width * generate.height * 4
        if generate.format != "npy":
            total += max(1, pipeline.workers) * whole
    accelerators = scenario.training.accelerators or 1
    return total * accelerators


def machine_problems(scenario: Scenario, machine: Machine) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for running ``scenario`` on ``machine``."""
    refusals: list[str] = []
    warnings: list[str] = []
    pipeline, training = scenario.pipeline, scenario.training
    cores = machine.cores
    accelerators = training.accelerators or 1
    workers = pipeline.workers * accelerators
    if workers > REFUSE_WORKERS_PER_CORE * cores:
        refusals.append(
            f"pipeline.workers {pipeline.workers} x {accelerators} accelerator(s) = {workers} "
            f"workers on {cores} cores (more than {REFUSE_WORKERS_PER_CORE} per core)"
        )
    elif workers > cores:
        warnings.append(f"pipeline.workers: {workers} workers on {cores} cores")
    threads = workers * pipeline.decoder_threads
    if scenario.dataset.kind == "video" and pipeline.decoder_threads > 1 and threads > 2 * cores:
        warnings.append(f"pipeline.decoder_threads: {threads} decoding threads on {cores} cores")
    if training.cpu_threads is not None and training.cpu_threads > cores:
        warnings.append(f"training.cpu_threads {training.cpu_threads} on {cores} cores")
    memory = memory_in_flight(scenario)
    if memory > machine.memory_bytes:
        refusals.append(
            f"pipeline: batch_size, crop, workers and prefetch_factor hold at least "
            f"{memory / 2**30:.1f} GiB in flight; this machine has "
            f"{machine.memory_bytes / 2**30:.1f} GiB of memory"
        )
    elif memory > machine.available_bytes:
        warnings.append(
            f"pipeline: at least {memory / 2**30:.1f} GiB in flight, "
            f"{machine.available_bytes / 2**30:.1f} GiB of memory available"
        )
    return refusals, warnings


def check_machine(
    loaded: Sequence[LoadedScenario], *, force: bool, machine: Machine | None = None
) -> None:
    """Print warnings; refuse (ScenarioError, one line each) what this machine cannot run,
    unless ``force``, which turns refusals into warnings."""
    machine = machine or Machine.here()
    refused: list[str] = []
    for item in loaded:
        refusals, warnings = machine_problems(item.scenario, machine)
        for line in warnings + (refusals if force else []):
            print(f"warning: {item.file}: {line}", file=sys.stderr)
        if not force:
            refused.extend(f"{item.file}: {line}; --force runs it anyway" for line in refusals)
    if refused:
        raise ScenarioError(refused)
