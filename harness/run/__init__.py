"""One run of a scenario, from checks to results folder.

Everything that can refuse the run (backend, device, dataset, cache) is checked before any work
(``prepare``); then one of two drivers runs it: this process alone or as one of torchrun's ranks
(``single``), or N emulated accelerators launched as processes and merged into one run folder
(``accelerators``); ``finish`` writes the folder's files. What the numbers mean is decided in
``harness.summary`` (pure); this package only gathers them.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.run.accelerators import Nodes, run_accelerators
from harness.run.finish import RunOutcome
from harness.run.prepare import (
    PreparedRun,
    RunContext,
    local_accelerators,
    prepare_page_cache,
    prepare_run,
)
from harness.run.single import Interrupted, run_single, train_and_collect
from harness.scenario import LoadedScenario

__all__ = [
    "Interrupted",
    "Nodes",
    "PreparedRun",
    "RunContext",
    "RunOutcome",
    "local_accelerators",
    "prepare_page_cache",
    "prepare_run",
    "run_accelerators",
    "run_scenario",
    "train_and_collect",
]


def run_scenario(
    loaded: LoadedScenario,
    *,
    results_root: Path,
    command: list[str],
    repeat: tuple[int, int] | None = None,
    quiet: bool = False,
    launch: bool = False,
) -> RunOutcome:
    """Run the scenario's training loop with its collectors and write ``results/<run-id>/``.

    Emulated accelerators are launched as processes when there are several (or with ``launch``,
    so that one accelerator runs exactly as each of several would: capacity probes)."""
    launched = local_accelerators(loaded.scenario)
    prepared = prepare_run(loaded, int(os.environ.get("LOCAL_RANK", "0")))
    under_torchrun = "LOCAL_WORLD_SIZE" in os.environ
    if prepared.compute_times is not None and (launched > 1 or (launch and not under_torchrun)):
        return run_accelerators(
            prepared, launched, results_root=results_root, command=command, repeat=repeat,
            quiet=quiet,
        )  # fmt: skip
    return run_single(
        prepared, results_root=results_root, command=command, repeat=repeat, quiet=quiet
    )
