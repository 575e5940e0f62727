"""Input pipelines: the backends of ``harness.registry.BACKENDS``, each a module imported only
when asked for.

A scenario names its backend (``pipeline.backend``; the allowed names are the registry's). A
backend module is a ``Backend`` (``harness.registry.Backend``): ``unavailable()``,
``check_scenario(source, use_cuda)``, ``batches(request)`` and ``ignored_settings(scenario)``;
failing to import the module at all counts as unavailable, with the reason.

So a missing optional dependency (DALI, PyNvVideoCodec, CUDA) never breaks the rest: only the
scenario that asks for it stops, with ``backend <name> not available: <reason>``. A new backend is
one module and one line in the registry.

Some pipeline settings are the backend's to act on (``BACKEND_SETTINGS``); a backend says which it
ignores for a scenario's data, so that ``ignored_settings`` warns where one is set for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias, cast

from harness.errors import HarnessError, one_line
from harness.registry import BACKENDS
from harness.registry import Backend as BackendProtocol

if TYPE_CHECKING:
    import torch

    from harness.pipeline.accounting import FetchLog
    from harness.pipeline.batch import Batch
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.preprocess import PreprocessEmulation
    from harness.pipeline.sources import Source
    from harness.scenario import Scenario

BACKEND_NAMES = BACKENDS.names
# The pipeline settings whose effect lies with the backend; a backend that does not act on one
# for a scenario's data says so (``Backend.ignored_settings``). batch_size and crop are every
# backend's; backend, mode, cache and page_cache are the harness's own.
BACKEND_SETTINGS = (
    "workers",
    "shuffle",
    "prefetch_factor",
    "decoder_threads",
    "read_threads",
    "sequence_length",
    "on_corrupt",
)


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
    # where the backend logs every sample it fetched, consumed or not (None: not logged)
    fetch_log: FetchLog | None = None
    # emulated preprocessing (``pipeline.preprocess: emulated``): read, then wait; None: real
    preprocess: PreprocessEmulation | None = None

    @property
    def device_index(self) -> int | None:
        """The CUDA device's index, None on the CPU."""
        return self.device.index if self.device.type == "cuda" else None


Backend: TypeAlias = "BackendProtocol[Scenario, Source, BatchRequest, Batch]"


def _module(name: str) -> Backend:
    if name not in BACKENDS:
        raise HarnessError(f"backend {name}: unknown; known: {', '.join(BACKENDS)}")
    try:
        return _as_backend(BACKENDS.load(name))
    except ImportError as exc:
        raise HarnessError(f"backend {name} not available: {one_line(exc)}") from None


def _as_backend(module: ModuleType) -> Backend:
    return cast("Backend", module)


def backend_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot be used on this machine, or None when it can."""
    if name not in BACKENDS:
        return f"unknown backend; known: {', '.join(BACKENDS)}"
    try:
        module = _as_backend(BACKENDS.load(name))
    except ImportError as exc:
        return one_line(exc)
    return module.unavailable()


def require_backend(name: str) -> Backend:
    """The backend's module, or a ``HarnessError`` saying why it is not available here."""
    module = _module(name)
    reason = module.unavailable()
    if reason is not None:
        raise HarnessError(f"backend {name} not available: {reason}")
    return module


def _set_settings(scenario: Scenario) -> list[str]:
    """The backend settings a scenario sets to other than their defaults."""
    pipeline = scenario.pipeline
    fields = type(pipeline).model_fields
    return [name for name in BACKEND_SETTINGS if getattr(pipeline, name) != fields[name].default]


def _ignored_by_backend(scenario: Scenario) -> Mapping[str, str]:
    """What the scenario's backend ignores for its data; nothing when the backend cannot load
    here (the run says why it is not available)."""
    try:
        backend = _as_backend(BACKENDS.load(scenario.pipeline.backend))
    except ImportError:
        return {}
    return backend.ignored_settings(scenario)


def ignored_settings(scenario: Scenario) -> list[str]:
    """One warning line per backend setting the scenario sets (to other than its default) that
    its backend ignores for its data, naming the setting, the backend and why. The backend's
    module is imported only when such a setting is set."""
    wanted = _set_settings(scenario)
    if not wanted:
        return []
    ignored = _ignored_by_backend(scenario)
    backend = scenario.pipeline.backend
    return [
        f"pipeline.{name}: ignored by the {backend} backend ({ignored[name]})"
        for name in wanted
        if name in ignored
    ]


def reader_count(scenario: Scenario) -> int:
    """How many reads the scenario's backend keeps in flight on one accelerator: its workers
    (one at least: the training process reads when there are none), each with
    ``pipeline.read_threads`` I/O threads where the backend honours them."""
    pipeline = scenario.pipeline
    threads = 1 if "read_threads" in _ignored_by_backend(scenario) else pipeline.read_threads
    return max(1, pipeline.workers) * threads
