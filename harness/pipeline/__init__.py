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


def _nvdec_available() -> str | None:
    from harness.pipeline.nvdec_backend import unavailable

    return unavailable()


# backend name -> check returning None when usable, else the reason it is not
BACKENDS: dict[str, Callable[[], str | None]] = {
    "torch": _torch_available,
    "dali": _dali_available,
    "nvdec": _nvdec_available,
}


def backend_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot be used on this machine, or None when it can."""
    check = BACKENDS.get(name)
    return f"unknown backend; known: {', '.join(BACKENDS)}" if check is None else check()


def require_backend(name: str) -> None:
    reason = backend_unavailable(name)
    if reason is not None:
        raise HarnessError(f"backend {name} not available: {reason}")
