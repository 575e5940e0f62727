"""The extension points: backends, collectors, exporters and commands, by name.

Each registry maps a name to the module that implements it, as a string: a module is imported
only when ``load`` asks for it, so a missing optional package (DALI, MLflow, NVML) stops only the
entry that needs it, and reading the names (the scenario schema, ``harness --help``) imports
nothing. This module is a leaf: it imports nothing from the harness, so that every layer may
read the names from here (the scenario schema, below the pipeline, takes its backend names).

What a module must define to be an entry is the ``Protocol`` beside its registry. The protocols
are generic over the types their owners define above this floor (a backend's ``Source`` and
``BatchRequest`` live in ``harness.pipeline``); each owner names them once, e.g.
``harness.pipeline.Backend``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Protocol, TypeVar


class Registry(Mapping[str, str]):
    """Names -> module paths of one extension point, in the order listed (the order the CLI
    and a scenario's defaults show them); a module is imported when ``load`` asks for it."""

    def __init__(self, kind: str, modules: Mapping[str, str]) -> None:
        self.kind = kind  # "backend", "collector", ...: what an entry is, for messages
        self._modules = dict(modules)

    def __getitem__(self, name: str) -> str:
        return self._modules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._modules)

    def load(self, name: str) -> ModuleType:
        """The module of entry ``name``, imported now. ``KeyError`` for a name not registered;
        ``ImportError`` when the module, or a package it needs, is missing: the owner of the
        registry turns either into its message."""
        return importlib.import_module(self._modules[name])


# --- backends (harness.pipeline) ----------------------------------------------------------------

ScenarioT = TypeVar("ScenarioT", contravariant=True)
SourceT = TypeVar("SourceT", contravariant=True)
RequestT = TypeVar("RequestT", contravariant=True)
BatchT = TypeVar("BatchT", covariant=True)


class Backend(Protocol[ScenarioT, SourceT, RequestT, BatchT]):
    """An input pipeline (``pipeline.backend``), as ``harness.pipeline`` calls it."""

    def unavailable(self) -> str | None:
        """Why it cannot run on this machine (a missing package, no GPU), or None."""
        ...

    def check_scenario(self, source: SourceT, use_cuda: bool) -> None:
        """Refuse, before any work, a dataset it cannot read (``HarnessError`` naming the file)."""
        ...

    def batches(self, request: RequestT) -> Iterable[BatchT]:
        """The training batches of one rank."""
        ...

    def ignored_settings(self, scenario: ScenarioT) -> Mapping[str, str]:
        """The backend-dependent pipeline settings (``harness.pipeline.BACKEND_SETTINGS``) it
        does not act on for this scenario's data, each with why; what it leaves out it honours."""
        ...


BACKENDS = Registry(
    "backend",
    {
        "torch": "harness.pipeline.torch_backend",
        "dali": "harness.pipeline.dali_backend",
        "nvdec": "harness.pipeline.nvdec_backend",
    },
)

# --- collectors (harness.collect) ---------------------------------------------------------------

ContextT = TypeVar("ContextT", contravariant=True)
CollectorT = TypeVar("CollectorT", covariant=True)


class CollectorFactory(Protocol[ContextT, CollectorT]):
    """A collector's module: ``collector(context)`` makes the run's sampler of its figures."""

    def collector(self, context: ContextT) -> CollectorT: ...


COLLECTORS = Registry(
    "collector",
    {
        "gpu": "harness.collect.gpu",
        "io": "harness.collect.procio",
        "cpu": "harness.collect.cpu",
        "prometheus": "harness.collect.prometheus",
    },
)
# What a scenario's collectors.enabled may list: "latency" has no module, the training loop
# times it; the order is the order a scenario's default lists them in.
COLLECTOR_NAMES = (*COLLECTORS.names, "latency")
# Left out of a scenario's default: they need settings of their own (a URL to scrape).
OPTIONAL_COLLECTORS = ("prometheus",)
DEFAULT_COLLECTORS = tuple(name for name in COLLECTOR_NAMES if name not in OPTIONAL_COLLECTORS)

# --- exporters (harness.export) -----------------------------------------------------------------

RunsT = TypeVar("RunsT", contravariant=True)
OptionsT = TypeVar("OptionsT", contravariant=True)


class Exporter(Protocol[RunsT, OptionsT]):
    """An exporter (``harness export --to NAME``)."""

    @property
    def TEXT(self) -> bool:
        """Whether it writes a text format (then a target of None means stdout)."""
        ...

    def export(self, runs: RunsT, target: str | None, options: OptionsT) -> list[str]:
        """Export ``runs``; what it did, a line each."""
        ...


EXPORTERS = Registry(
    "exporter",
    {
        "mlflow": "harness.export.mlflow_exporter",
        "clearml": "harness.export.clearml_exporter",
        "prometheus": "harness.export.prometheus",
        "dlio": "harness.export.dlio",
    },
)

# --- commands (harness.commands) ----------------------------------------------------------------


class Command(Protocol):
    """A CLI command's module; it imports its heavy dependencies inside ``run``."""

    @property
    def HELP(self) -> str:
        """One line for ``harness --help``."""
        ...

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Its arguments."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Do it; the exit code."""
        ...


def _commands(names: Sequence[str]) -> Registry:
    return Registry("command", {name: f"harness.commands.{name}" for name in names})


# In the order ``harness --help`` lists them.
COMMANDS = _commands(
    (
        "validate",
        "show",
        "datagen",
        "cache",
        "run",
        "suite",
        "selfcheck",
        "calibrate",
        "profiles",
        "capacity",
        "report",
        "compare",
        "baseline",
        "export",
        "lab",
    )
)
