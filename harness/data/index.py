"""Where dataset indexes live, and the one way a run gets at a dataset's manifest.

A generated dataset is the harness's own: its ``dataset.json`` sits in its folder. A brought
dataset may be read-only (shared training data often is mounted so), and validating storage must
never need write access to the data under test: its index goes to a state folder, by default
``./.harness/index`` under the working directory (``--index-dir DIR`` or ``HARNESS_INDEX_DIR``),
in a folder named after the dataset's path, in a file named by a fingerprint of its content (its
files' names, sizes and modification times, and the settings that shape the index). A
``dataset.json`` that an older harness wrote inside a brought folder is still read.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from harness.data.byo_layout import content_stamp
from harness.data.manifest import (
    FORMAT,
    FORMAT_VERSION,
    DatasetManifest,
    as_dataset_manifest,
    read_manifest,
    require_complete,
)
from harness.errors import HarnessError
from harness.files import DATASET_JSON, check_format, read_json
from harness.scenario import ImageCollageDataset, RecordsDataset, VideoDataset

INDEX_DIR_ENV = "HARNESS_INDEX_DIR"
DEFAULT_INDEX_DIR = Path(".harness") / "index"


def index_dir() -> Path:
    """The state folder of dataset indexes (absolute)."""
    return Path(os.environ.get(INDEX_DIR_ENV) or DEFAULT_INDEX_DIR).absolute()


def dataset_folder(root: Path) -> Path:
    """The index folder of the dataset at ``root``: its name and a hash of its absolute path."""
    absolute = str(root.absolute())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name or "root")[:60]
    return index_dir() / f"{name}-{hashlib.sha256(absolute.encode()).hexdigest()[:12]}"


def index_file(root: Path, stamp: str) -> Path:
    return dataset_folder(root) / f"{stamp}.json"


def read_index(root: Path, stamp: str) -> DatasetManifest | None:
    """The complete index of the dataset at ``root`` with content ``stamp``, if there is one: in
    the state folder, or (written by an older harness) inside the dataset."""
    path = index_file(root, stamp)
    document = read_json(path, DATASET_JSON)
    if document is not None:
        check_format(path, document, FORMAT, FORMAT_VERSION)
        manifest = as_dataset_manifest(document, path)
        if manifest["complete"]:
            return manifest
    legacy = read_manifest(root)
    if legacy and legacy.get("fingerprint") == stamp and legacy.get("complete"):
        return legacy
    return None


def dataset_manifest(
    dataset: ImageCollageDataset | VideoDataset | RecordsDataset, scenario_hint: str = "SCENARIO"
) -> DatasetManifest:
    """The manifest a run reads: a generated dataset's own, or a brought one's up-to-date index
    (else an error that says which command makes it)."""
    root = Path(dataset.path)
    if dataset.generate is not None:
        return require_complete(root, scenario_hint)
    stamp = content_stamp(dataset)
    found = read_index(root, stamp)
    if found is not None:
        return found
    legacy = read_manifest(root)
    if legacy is not None and legacy.get("complete") and legacy.get("source") == "byo":
        return legacy  # an older harness's index, which did not record its files' state
    others = list(dataset_folder(root).glob("*.json")) if dataset_folder(root).is_dir() else []
    state = "has changed since it was indexed" if others else "is not indexed"
    raise HarnessError(
        f"bring-your-own dataset at {root} {state} (indexes: {index_dir()}): index it with "
        f"`harness datagen {scenario_hint}` (same --index-dir)"
    )
