"""The baseline store: where saved baselines live, how they are named, found, saved and listed.

Baselines are kept in ``./baselines/`` (or ``$HARNESS_BASELINES``), one JSON file per name and
machine::

    baselines/<hardware-key>/<name>.json

``<hardware-key>`` is a short hash of the hardware identity (``harness.compare.hardware``). One
name (say ``main``) can so be saved by every machine of a CI pool, and a comparison picks the one
saved on the current run's hardware. The file format is ``harness.compare.sides``'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from harness.compare.hardware import describe_hardware, hardware_key
from harness.compare.sides import Side, baseline_document, read_baseline
from harness.errors import HarnessError
from harness.files import ensure_writable_dir, write_json_atomic

BASELINES_ENV = "HARNESS_BASELINES"
DEFAULT_BASELINES_DIR = Path("baselines")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def baselines_dir(explicit: Path | None = None) -> Path:
    """Where baselines are kept: the argument, else ``$HARNESS_BASELINES``, else ./baselines."""
    if explicit is not None:
        return Path(explicit)
    configured = os.environ.get(BASELINES_ENV)
    return Path(configured) if configured else DEFAULT_BASELINES_DIR


def check_name(name: str) -> str:
    """Baseline names become file names: letters, digits, '.', '_' and '-', not starting with
    a dot or a dash."""
    if not NAME_PATTERN.fullmatch(name):
        raise HarnessError(
            f"baseline name {name!r}: use letters, digits, '.', '_' and '-' (up to 100), "
            "starting with a letter or digit"
        )
    return name


def find_baseline(name: str, store: Path, hardware: Mapping[str, object] | None) -> Path:
    """The file of baseline ``name``: the one saved on ``hardware`` when there is one, else the
    only one of that name (the hardware check then explains the mismatch)."""
    candidates = sorted(store.glob(f"*/{name}.json")) if store.is_dir() else []
    if not candidates:
        raise HarnessError(
            f"{name}: no such run folder, summary file or saved baseline (none named {name!r} "
            f"in {store}; save one with `harness baseline save RUN --name {name}`)"
        )
    if hardware is not None:
        own = store / hardware_key(hardware) / f"{name}.json"
        if own.exists():
            return own
    if len(candidates) == 1:
        return candidates[0]
    listed = ", ".join(str(c) for c in candidates)
    raise HarnessError(
        f"baseline {name!r} is saved for {len(candidates)} other machines, none of them this "
        f"run's: name one by its file ({listed})"
    )


def save_baseline(side: Side, name: str, store: Path) -> tuple[Path, bool]:
    """Write ``side`` as baseline ``name`` in its hardware's folder; (the file, whether it
    replaced one). The side's hardware must be known."""
    assert side.hardware is not None
    folder = store / hardware_key(side.hardware)
    ensure_writable_dir(folder)
    path = folder / f"{check_name(name)}.json"
    replaced = path.exists()
    if replaced:
        read_baseline(path)  # never overwrite a file this harness cannot read
    write_json_atomic(path, baseline_document(side, name))
    return path, replaced


def list_baselines(store: Path) -> list[tuple[str, ...]]:
    """One row per saved baseline: name, hardware key, created, scenarios (runs), machine; by
    name, then newest last. A file that cannot be read is a row with the reason rather than
    hiding the others."""
    files = sorted(store.glob("*/*.json")) if store.is_dir() else []
    rows: list[tuple[str, ...]] = []
    for path in files:
        try:
            document = read_baseline(path)
        except HarnessError as exc:
            rows.append((path.stem, path.parent.name, "-", "-", f"unreadable: {exc}"))
            continue
        scenarios = document.get("scenarios") or {}
        runs = ", ".join(f"{s} x{len(b.get('runs', []))}" for s, b in scenarios.items())
        rows.append(
            (
                str(document.get("name", path.stem)),
                str(document.get("hardware_key", path.parent.name)),
                str(document.get("created", "-")),
                runs or "-",
                describe_hardware(document.get("hardware")),
            )
        )
    rows.sort(key=lambda row: (row[0], row[2]))
    return rows
