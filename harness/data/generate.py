"""Generate a scenario's synthetic dataset on the storage under test: parallel, resumable, exact.

Generation is deterministic from the scenario's seed and split into independent files, each
written atomically, so that an interrupted generation resumes where it stopped and a completed one
is recognised (by its fingerprint) and not redone.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.data import collage, video
from harness.data.files import ensure_writable_dir, sweep_temporaries, sync_filesystem
from harness.data.manifest import (
    MANIFEST_NAME,
    fingerprint,
    new_manifest,
    read_manifest,
    write_manifest,
)
from harness.data.parallel import available_cpus, run_parallel
from harness.errors import HarnessError
from harness.scenario import ImageCollageDataset, VideoDataset

GENERATORS: dict[str, ModuleType] = {"image_collage": collage, "video": video}
# Folders a generator writes in; removed by --force (never anything else in the folder).
OUTPUT_FOLDERS = ("images", "masks", "videos")


def dataset_fingerprint(dataset: ImageCollageDataset | VideoDataset) -> str:
    """What determines the bytes: kind, parameters (not the worker count), generator version."""
    assert dataset.generate is not None
    generator = GENERATORS[dataset.kind]
    return fingerprint(
        {
            "kind": dataset.kind,
            "params": dataset.generate.model_dump(mode="json", exclude={"workers"}),
            "generator_version": generator.GENERATOR_VERSION,
        }
    )


def generate_dataset(
    dataset: ImageCollageDataset | VideoDataset, *, force: bool = False
) -> dict[str, Any]:
    """Generate (or finish, or confirm) the dataset at ``dataset.path``; return its manifest."""
    params = dataset.generate
    assert params is not None
    generator = GENERATORS[dataset.kind]
    root = Path(dataset.path)
    ensure_writable_dir(root)
    wanted = dataset_fingerprint(dataset)
    existing = read_manifest(root)
    if existing is not None and existing.get("fingerprint") == wanted and not force:
        if existing.get("complete"):
            print(f"{dataset.kind} dataset at {root} is up to date ({_size(existing)})")
            return existing
    elif existing is not None and not force:
        raise HarnessError(
            f"dataset at {root} was generated with other parameters "
            f"({_differences(existing.get('params', {}), params.model_dump(mode='json'))}): "
            "use --force to regenerate it, or choose another dataset.path"
        )
    elif existing is None and _has_foreign_files(root) and not force:
        raise HarnessError(
            f"{root} is not empty and holds no harness dataset: choose an empty folder for "
            "dataset.path, or use --force to write beside what is there"
        )
    if force and existing is not None:
        _remove_outputs(root)

    manifest = new_manifest(
        kind=dataset.kind,
        source="generated",
        fingerprint=wanted,
        classes=params.classes,
        labels="exact",
        params=params.model_dump(mode="json"),
    )
    manifest["generator_version"] = generator.GENERATOR_VERSION
    write_manifest(root, manifest)
    sweep_temporaries(root)

    count = generator.job_count(params)
    todo = [i for i in range(count) if not _done(root, generator.outputs(params, i))]
    cores = params.workers or available_cpus()
    processes = max(1, min(cores, len(todo)))
    threads = max(1, cores // processes)  # a few long videos still get every core
    if len(todo) < count:
        print(f"resuming: {count - len(todo)} of {count} files already generated")
    started = time.perf_counter()
    run_parallel(
        generator.make,
        [(str(root), params, index, threads) for index in todo],
        processes=processes,
        description=f"generating {dataset.kind}",
        unit="file",
    )
    sync_filesystem(root)
    elapsed = time.perf_counter() - started

    files = generator.describe(root, params)
    manifest.update(
        complete=True,
        files=files,
        total_bytes=sum(f["bytes"] + f.get("mask_bytes", 0) for f in files),
        generation={"seconds": round(elapsed, 3), "processes": processes, "threads": threads},
    )
    if dataset.kind == "video":
        manifest["total_frames"] = sum(f["frames"] for f in files)
    write_manifest(root, manifest)
    written = sum(files[i]["bytes"] + files[i].get("mask_bytes", 0) for i in todo)
    rate = written / 1e6 / elapsed if elapsed > 0 else 0.0
    print(
        f"generated {dataset.kind} dataset at {root}: {_size(manifest)}; wrote "
        f"{written / 1e6:.1f} MB in {elapsed:.1f} s ({rate:.1f} MB/s, flushed to disk) "
        f"with {processes} process(es) x {threads} thread(s)"
    )
    sys.stdout.flush()
    return manifest


def _size(manifest: dict[str, Any]) -> str:
    files = manifest.get("files", [])
    frames = manifest.get("total_frames")
    what = f"{len(files)} videos, {frames} frames" if frames else f"{len(files)} images"
    return f"{what}, {manifest.get('total_bytes', 0) / 1e6:.1f} MB"


def _done(root: Path, names: tuple[str, ...]) -> bool:
    return all((root / name).exists() for name in names)


def _has_foreign_files(root: Path) -> bool:
    return any(p.name != MANIFEST_NAME and ".tmp-" not in p.name for p in root.iterdir())


def _remove_outputs(root: Path) -> None:
    for folder in OUTPUT_FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key != "workers" and old.get(key) != new.get(key)
    ]
    return ", ".join(changed) or "generator version changed"
