"""Dataset manifests: what a dataset folder holds, with a format version readers check.

``dataset.json`` sits at the top of every dataset folder, generated or brought by the user. It is
written first with ``"complete": false`` (so that a resumed generation knows its parameters) and
rewritten with ``"complete": true`` and the file list once every file is in place.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError
from harness.files import check_format, read_json, write_json_atomic

MANIFEST_NAME = "dataset.json"
FORMAT = "harness-dataset"
FORMAT_VERSION = 1


def manifest_path(dataset_dir: Path) -> Path:
    return dataset_dir / MANIFEST_NAME


def fingerprint(document: dict[str, Any]) -> str:
    """A short stable hash of what determines a dataset's bytes (parameters + generator version)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_manifest(
    *, kind: str, source: str, fingerprint: str, classes: int, labels: str, params: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "source": source,  # "generated" or "byo"
        "fingerprint": fingerprint,
        "classes": classes,
        "labels": labels,  # "exact" (generated), "masks" (byo), or "derived:<rule>"
        "params": params,
        "harness_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "complete": False,
        "files": [],
        "total_bytes": 0,
    }


def write_manifest(dataset_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(manifest_path(dataset_dir), manifest)


def read_manifest(dataset_dir: Path) -> dict[str, Any] | None:
    """The manifest of ``dataset_dir``, None when there is none; a clear error for other formats."""
    path = manifest_path(dataset_dir)
    document = read_json(path)
    if document is None:
        return None
    check_format(path, document, FORMAT, FORMAT_VERSION)
    return document


def require_complete(dataset_dir: Path, scenario_hint: str = "SCENARIO") -> dict[str, Any]:
    """The manifest of a complete dataset, or an error that says which command creates it."""
    manifest = read_manifest(dataset_dir)
    if manifest is None:
        raise HarnessError(
            f"no dataset at {dataset_dir}: create it with `harness datagen {scenario_hint}`"
        )
    if not manifest.get("complete"):
        raise HarnessError(
            f"dataset at {dataset_dir} is incomplete (generation was interrupted): "
            f"finish it with `harness datagen {scenario_hint}`"
        )
    return manifest
