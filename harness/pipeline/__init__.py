"""Input pipelines, one module per backend, registered here and imported lazily.

A scenario names its backend (``pipeline.backend``). ``require_backend`` checks, before any work,
that the backend and what it needs can be imported on this machine, so that a missing optional
dependency (DALI, PyNvVideoCodec, CUDA) never breaks the rest: the scenario that asks for it stops
with ``backend <name> not available: <reason>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness.errors import HarnessError


def _torch_available() -> str | None:
    try:
        importlib.import_module("torch")
    except ImportError as exc:
        return f"PyTorch is not installed ({exc})"
    return None


def _dali_available() -> str | None:
    from harness.pipeline.dali_backend import unavailable

    return unavailable()


def _not_built(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return f"the {name} backend is not part of this version of the harness yet"

    return check


# backend name -> check returning None when usable, else the reason it is not
BACKENDS: dict[str, Callable[[], str | None]] = {
    "torch": _torch_available,
    "dali": _dali_available,
    "nvdec": _not_built("nvdec"),
}


def require_backend(name: str) -> None:
    check = BACKENDS.get(name)
    reason = f"unknown backend; known: {', '.join(BACKENDS)}" if check is None else check()
    if reason is not None:
        raise HarnessError(f"backend {name} not available: {reason}")
