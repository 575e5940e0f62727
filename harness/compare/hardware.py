"""Hardware identities in comparisons: keys, differences, and the check on the runs of one side.

Numbers from different machines are not comparable. A run's identity (GPU model and count,
driver, CPU model, storage device, filesystem) is ``harness.env.hardware_identity`` of its
manifest; here it is named by a short key (the folder its baselines are kept in), compared field
by field, and described in one line a reader recognises a machine by.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from harness import results
from harness.env import NOT_AVAILABLE
from harness.errors import HarnessError

MISMATCH_FLAG = "--allow-hardware-mismatch"


def normalised_identity(identity: Mapping[str, object]) -> dict[str, object]:
    """The identity with every "not available: <reason>" reduced to "not available": the reason
    (a missing library, a permission) says nothing about the hardware."""
    return {
        key: NOT_AVAILABLE if isinstance(value, str) and value.startswith(NOT_AVAILABLE) else value
        for key, value in identity.items()
    }


def hardware_key(identity: Mapping[str, object]) -> str:
    """A short stable name for a hardware identity: the folder its baselines are kept in."""
    text = json.dumps(normalised_identity(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def hardware_differences(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    """The identity fields that differ, one phrase each: ``cpu_model 'X' vs 'Y'``."""
    left, right = normalised_identity(a), normalised_identity(b)
    return [
        f"{key} {left.get(key)!r} vs {right.get(key)!r}"
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def describe_hardware(identity: Mapping[str, object] | None) -> str:
    """One line a reader recognises a machine by."""
    if identity is None:
        return "hardware not recorded"
    count = identity.get("gpu_count")
    gpus = f"{count}x {identity.get('gpu_model')}" if isinstance(count, int) and count else "no GPU"
    return (
        f"{gpus}; {identity.get('cpu_model')}; "
        f"{identity.get('storage_device')} ({identity.get('storage_fs_type')})"
    )


def runs_hardware(
    runs: Sequence[results.RunFolder], label: str, allow_mixed: bool
) -> tuple[dict[str, object] | None, list[str]]:
    """The hardware all ``runs`` ran on, and warnings; None when a run did not record it. Runs
    of one side on different machines are not repeats of one measurement: refused unless
    ``allow_mixed``."""
    identities = [run.hardware for run in runs]
    if any(identity is None for identity in identities):
        missing = next(r for r, i in zip(runs, identities, strict=True) if i is None)
        return None, [
            f"{label}: {missing.folder.name} has no {results.MANIFEST.file}: its hardware is "
            "unknown"
        ]
    first = identities[0]
    assert first is not None
    for run, identity in zip(runs, identities, strict=True):
        assert identity is not None
        differences = hardware_differences(first, identity)
        if not differences:
            continue
        text = (
            f"{label}: {runs[0].folder.name} and {run.folder.name} ran on different hardware "
            f"({'; '.join(differences)})"
        )
        if not allow_mixed:
            raise HarnessError(
                f"{text}: runs from different machines are not repeats of one measurement; "
                f"pass {MISMATCH_FLAG} to pool them anyway"
            )
        return first, [f"{text}: pooled anyway ({MISMATCH_FLAG})"]
    return first, []
