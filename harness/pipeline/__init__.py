"""Input pipelines: one registry of backends, each a module imported only when asked for.

A scenario names its backend (``pipeline.backend``; the allowed names are ``BACKENDS``' keys). A
backend module defines three functions:

* ``unavailable() -> str | None``: why it cannot run on this machine (a missing package, no
  GPU), or None. Failing to import the module at all counts as unavailable, with the reason.
* ``check_scenario(source, use_cuda) -> None``: refuse, before any work, a dataset it cannot
  read, with a ``HarnessError`` naming the file.
* ``batches(request: BatchRequest) -> Iterable[Batch]``: the training batches of one rank.

So a missing optional dependency (DALI, PyNvVideoCodec, CUDA) never breaks the rest: only the
scenario that asks for it stops, with ``backend <name> not available: <reason>``. A new backend is
one module and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from harness.errors import HarnessError, one_line

if TYPE_CHECKING:
    import torch

    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import Source

# backend name -> its module
BACKENDS: dict[str, str] = {
    "torch": "harness.pipeline.loader",
    "dali": "harness.pipeline.dali_backend",
    "nvdec": "harness.pipeline.nvdec_backend",
}
BACKEND_NAMES = tuple(BACKENDS)


@dataclass(frozen=True)
class BatchRequest:
    """What a backend needs to make the training batches of one rank."""

    source: Source
    plan: SamplePlan
    batch_size: int
    crop: int
    workers: int
    prefetch_factor: int
    read_threads: int  # I/O threads per worker reading whole files ahead (pipeline.readahead)
    on_corrupt: str
    seed: int
    rank: int
    world: int
    steps: int | None  # None: until the loop stops (duration-bound runs)
    device: torch.device  # where the loop trains: batches are pinned for, or made on, it
    work_dir: Path  # the run folder, for files a backend needs to write (DALI's file lists)

    @property
    def device_index(self) -> int | None:
        """The CUDA device's index, None on the CPU."""
        return self.device.index if self.device.type == "cuda" else None


def _module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise HarnessError(f"backend {name}: unknown; known: {', '.join(BACKENDS)}")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        raise HarnessError(f"backend {name} not available: {one_line(exc)}") from None


def backend_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot be used on this machine, or None when it can."""
    if name not in BACKENDS:
        return f"unknown backend; known: {', '.join(BACKENDS)}"
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        return one_line(exc)
    return module.unavailable()


def require_backend(name: str) -> ModuleType:
    """The backend's module, or a ``HarnessError`` saying why it is not available here."""
    module = _module(name)
    reason = module.unavailable()
    if reason is not None:
        raise HarnessError(f"backend {name} not available: {reason}")
    return module
