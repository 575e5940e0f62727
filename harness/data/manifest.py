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
from typing import Any, Literal, Required, TypedDict, cast

from harness import __version__
from harness.errors import HarnessError
from harness.files import DATASET_JSON, check_format, read_json, write_json_atomic

MANIFEST_NAME = "dataset.json"
FORMAT = "harness-dataset"
FORMAT_VERSION = 1


class FileRecord(TypedDict, total=False):
    """One file of a dataset, as ``files`` lists it: its path and size, its geometry, and what
    its writer knew of it (``harness.data.collage`` and ``harness.data.video`` describe the
    generated ones, ``harness.data.byo`` the brought ones)."""

    path: Required[str]  # relative to the dataset folder
    bytes: Required[int]
    width: int  # images and videos (required there)
    height: int
    mask: str  # its mask file (images; brought videos: a mask video)
    mask_bytes: int
    tracks: str  # generated videos: the object tracks their masks are drawn from
    mode: str  # brought images: Pillow mode, or "npy:C"
    mask_mode: str
    frames: int  # videos
    fps: float
    codec: str
    gop: int  # generated videos
    unique: str
    rotation: int  # brought videos: what their container says, when it says it
    video_streams: int
    pts: list[int]  # brought videos at a variable frame rate: their frames' timestamps
    mask_pts: list[int]
    records: int  # records datasets: records in the file
    record_bytes: int  # records datasets: the size of each of them (without framing)


class Repetition(TypedDict):
    """What repetition a storage system could exploit, measured on a sample
    (``harness.data.repetition.measure``)."""

    sample_bytes: int
    block_bytes: int
    distinct_block_share: float | None  # None: empty sample
    compressor: str
    compression_ratio: float | None


class Generation(TypedDict):
    """How a generation ran: seconds, processes, threads."""

    seconds: float
    processes: int
    threads: int


class DatasetManifest(TypedDict, total=False):
    """``dataset.json`` (or a brought dataset's index): what :func:`new_manifest` writes, then
    what a complete dataset adds."""

    format: Required[str]
    format_version: Required[int]
    kind: Required[str]  # "image_collage", "video" or "records"
    source: Required[Literal["generated", "byo"]]
    fingerprint: Required[str]
    classes: Required[int]
    labels: Required[str]  # "exact" (generated), "masks" (byo), or "derived:<rule>"
    params: Required[dict[str, object]]  # the generator's parameters, as JSON
    harness_version: Required[str]
    created: Required[str]
    complete: Required[bool]
    files: Required[list[FileRecord]]
    total_bytes: Required[int]
    total_frames: int  # videos, once complete
    generator_version: int  # generated
    generation: Generation  # generated, once complete
    repetition: Repetition  # generated, once complete
    dataset_path: str  # brought


def manifest_path(dataset_dir: Path) -> Path:
    return dataset_dir / MANIFEST_NAME


def fingerprint(document: dict[str, Any]) -> str:
    """A short stable hash of what determines a dataset's bytes (parameters + generator version)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_manifest(
    *,
    kind: str,
    source: Literal["generated", "byo"],
    fingerprint: str,
    classes: int,
    labels: str,
    params: dict[str, object],
) -> DatasetManifest:
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


def write_manifest(dataset_dir: Path, manifest: DatasetManifest) -> None:
    write_json_atomic(manifest_path(dataset_dir), manifest)


def read_manifest(dataset_dir: Path) -> DatasetManifest | None:
    """The manifest of ``dataset_dir``, None when there is none; a clear error for other formats."""
    path = manifest_path(dataset_dir)
    document = read_json(path, DATASET_JSON)
    if document is None:
        return None
    check_format(path, document, FORMAT, FORMAT_VERSION)
    return as_dataset_manifest(document, path)


# The keys every reader relies on, with their JSON types (``FileRecord``'s and
# ``DatasetManifest``'s Required keys: TypedDict cannot list them under postponed annotations).
_MANIFEST_KEYS: dict[str, type] = {
    "kind": str,
    "source": str,
    "fingerprint": str,
    "classes": int,
    "labels": str,
    "params": dict,
    "complete": bool,
    "files": list,
    "total_bytes": int,
}
_FILE_KEYS: dict[str, type] = {"path": str, "bytes": int}
_PICTURE_KEYS: dict[str, type] = {"width": int, "height": int}
_KIND_FILE_KEYS: dict[str, dict[str, type]] = {
    "image_collage": _PICTURE_KEYS,
    "video": _PICTURE_KEYS | {"frames": int},
    "records": {"records": int, "record_bytes": int},
}
_JSON_NAMES: dict[type, str] = {
    str: "string",
    int: "whole number",
    bool: "boolean (true or false)",
    dict: "JSON object",
    list: "JSON list",
}
_REMAKE = "a damaged or hand-edited index; rewrite it with `harness datagen SCENARIO --force`"


def as_dataset_manifest(document: dict[str, Any], path: Path) -> DatasetManifest:
    """A dataset manifest read from JSON, once ``check_format`` has passed it: a hand-edited or
    damaged one missing a key that readers rely on (or holding the wrong type there) is refused
    in one line naming the file and the key."""
    _require_keys(path, document, _MANIFEST_KEYS, "")
    if not document.get("complete"):
        return cast(DatasetManifest, document)  # an interrupted generation: no files yet
    file_keys = _FILE_KEYS | _KIND_FILE_KEYS.get(document["kind"], _PICTURE_KEYS)
    for index, record in enumerate(document["files"]):
        if not isinstance(record, dict):
            raise HarnessError(f"{path}: files[{index}] is not an object: {_REMAKE}")
        _require_keys(path, record, file_keys, f"files[{index}].")
    return cast(DatasetManifest, document)


def _require_keys(path: Path, document: dict[str, Any], keys: dict[str, type], where: str) -> None:
    for key, expected in keys.items():
        if key not in document:
            raise HarnessError(f"{path}: no key {where}{key}: {_REMAKE}")
        value = document[key]
        wrong_bool = isinstance(value, bool) and expected is not bool  # JSON true is no count
        if wrong_bool or not isinstance(value, expected):
            raise HarnessError(
                f"{path}: {where}{key} should be a {_JSON_NAMES[expected]}, found "
                f"{json.dumps(value)[:40]}: {_REMAKE}"
            )


def require_complete(dataset_dir: Path, scenario_hint: str = "SCENARIO") -> DatasetManifest:
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
