"""Generate a scenario's synthetic dataset on the storage under test: parallel, resumable, exact.

Generation is deterministic from the scenario's seed and split into independent files, each
written atomically, so that an interrupted generation resumes where it stopped and a completed one
is recognised (by its fingerprint) and not redone. Videos also resume mid-file (``remux``).

Before writing, it prints the planned size, the free space and an estimate of the time, and
refuses when the storage cannot hold the dataset; while writing, it shows bytes and frames
written (``progress``); after, it measures and records what repetition the storage could
exploit (``repetition``).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.data import collage, records, repetition, video_generator
from harness.data.manifest import (
    MANIFEST_NAME,
    DatasetManifest,
    Generation,
    fingerprint,
    new_manifest,
    read_manifest,
    write_manifest,
)
from harness.data.parallel import available_cpus, run_parallel
from harness.data.progress import GenerationProgress, read_progress
from harness.data.sizing import SPACE_MARGIN, Clients, Plan, count_for, probe_write_rate
from harness.errors import HarnessError
from harness.files import ensure_writable_dir, sweep_temporaries, sync_filesystem
from harness.scenario import (
    CollageGenerate,
    ImageCollageDataset,
    RecordsDataset,
    RecordsGenerate,
    VideoDataset,
    VideoGenerate,
)

GENERATORS: dict[str, ModuleType] = {
    "image_collage": collage,
    "video": video_generator,
    "records": records,
}
# Folders a generator writes in; removed by --force (never anything else in the folder).
OUTPUT_FOLDERS = ("images", "masks", "videos", "records")


Params = CollageGenerate | VideoGenerate | RecordsGenerate
GeneratedDataset = ImageCollageDataset | VideoDataset | RecordsDataset
MIN_BYTES_TO_PROBE = 256 * 10**6  # below this, a time estimate is not worth a write probe


def dataset_fingerprint(dataset: GeneratedDataset, params: Params) -> str:
    """What determines the bytes: kind, parameters with the size resolved (not the worker
    count), generator version."""
    generator = GENERATORS[dataset.kind]
    return fingerprint(
        {
            "kind": dataset.kind,
            "params": params.model_dump(mode="json", exclude={"workers"}),
            "generator_version": generator.GENERATOR_VERSION,
        }
    )


def resolve_size(kind: str, params: Params, clients: Clients | None) -> tuple[Params, float, bool]:
    """``params`` with the image or frame count set (``size: 5x-ram`` picks it from the clients'
    RAM), the bytes one image or frame takes, and whether that is exact."""
    generator = GENERATORS[kind]
    unit, exact = generator.unit_bytes(params)
    if params.size is None:
        return params, unit, exact
    target = (clients or Clients.this_machine()).target_bytes()
    if isinstance(params, VideoGenerate):
        resolved: Params = params.model_copy(
            update={"frames": count_for(target, unit, params.videos)}
        )
    elif isinstance(params, RecordsGenerate):
        resolved = params.model_copy(update={"files": count_for(target, unit)})
    else:
        resolved = params.model_copy(update={"images": count_for(target, unit)})
    return resolved, unit, exact


def generate_dataset(
    dataset: GeneratedDataset,
    *,
    force: bool = False,
    clients: Clients | None = None,
) -> DatasetManifest:
    """Generate (or finish, or confirm) the dataset at ``dataset.path``; return its manifest.
    ``clients``: whose RAM ``size: 5x-ram`` counts (default: this machine)."""
    assert dataset.generate is not None
    generator = GENERATORS[dataset.kind]
    root = Path(dataset.path)
    ensure_writable_dir(root)
    params, unit, exact = resolve_size(dataset.kind, dataset.generate, clients)
    if dataset.generate.size is not None:
        what, count = _count(params)
        print(
            f"size {dataset.generate.size}: {count:,} {what} "
            f"({(clients or Clients.this_machine()).describe()})"
        )
    wanted = dataset_fingerprint(dataset, params)
    existing = _up_to_date(dataset, params, wanted, force)
    if existing is not None:
        return existing

    count = generator.job_count(params)
    frames = video_generator.frame_count(params) if isinstance(params, VideoGenerate) else 1
    per_job = unit * frames
    planned = int(per_job * count)
    if planned * SPACE_MARGIN > Plan(root, planned, planned, exact).free_bytes():
        # Refused before anything is written (and before listing what is done: a size far too
        # big could list for hours); what an interrupted generation wrote counts as space it has.
        Plan(root, planned, max(0, planned - _bytes_under(root)), exact).check_space()

    manifest = new_manifest(
        kind=dataset.kind,
        source="generated",
        fingerprint=wanted,
        # records carry one label (0): MLPerf Storage's readers never look at it
        classes=1 if isinstance(params, RecordsGenerate) else params.classes,
        labels="none" if isinstance(params, RecordsGenerate) else "exact",
        params=params.model_dump(mode="json"),
    )
    manifest["generator_version"] = generator.GENERATOR_VERSION
    write_manifest(root, manifest)
    sweep_temporaries(root)

    todo = [i for i in range(count) if not _done(root, generator.outputs(params, i))]
    plan = Plan(root, planned, int(per_job * len(todo)), exact)
    if plan.todo_bytes >= MIN_BYTES_TO_PROBE:
        plan = Plan(root, plan.planned_bytes, plan.todo_bytes, exact, probe_write_rate(root))
    print(f"{dataset.kind} dataset at {root}: {plan.describe()}")
    if len(todo) < count:
        print(f"resuming: {count - len(todo)} of {count} files already generated")
    generation, elapsed = _write_files(dataset.kind, root, params, todo, per_job, plan.todo_bytes)
    return _finish(dataset.kind, root, params, manifest, todo, generation, elapsed)


def _up_to_date(
    dataset: GeneratedDataset, params: Params, wanted: str, force: bool
) -> DatasetManifest | None:
    """The manifest of a complete dataset with fingerprint ``wanted`` already at
    ``dataset.path``, or None when there is work to do (``force``: the folder's earlier outputs
    are removed); refused when the folder holds another dataset or files of its own."""
    root = Path(dataset.path)
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
    return None


def _write_files(
    kind: str, root: Path, params: Params, todo: list[int], per_job: float, todo_bytes: int
) -> tuple[Generation, float]:
    """Write the files of jobs ``todo`` in parallel, flushed to disk; how (the manifest's
    ``generation``: seconds, processes, threads) and the seconds it took."""
    generator = GENERATORS[kind]
    cores = params.workers or available_cpus()
    processes = max(1, min(cores, len(todo)))
    threads = max(1, cores // processes)  # a few long videos still get every core
    sys.stdout.flush()
    started = time.perf_counter()
    progress = _progress(kind, root, params, todo, per_job, todo_bytes)
    generator.prepare(params)  # shared pools, built once before the workers fork
    try:
        run_parallel(
            generator.make,
            [(str(root), params, index, threads) for index in todo],
            processes=processes,
            description=f"generating {kind}",
            unit="file",
            poll=progress.poll,
        )
    finally:
        progress.close()
    sync_filesystem(root)
    elapsed = time.perf_counter() - started
    return {"seconds": round(elapsed, 3), "processes": processes, "threads": threads}, elapsed


def _finish(
    kind: str,
    root: Path,
    params: Params,
    manifest: DatasetManifest,
    todo: list[int],
    generation: Generation,
    elapsed: float,
) -> DatasetManifest:
    """Complete ``manifest`` from the files on disk, with the repetition they hold; write it."""
    files = GENERATORS[kind].describe(root, params)
    manifest.update(
        {
            "complete": True,
            "files": files,
            "total_bytes": sum(f["bytes"] + f.get("mask_bytes", 0) for f in files),
            "generation": generation,
        }
    )
    if kind == "video":
        manifest["total_frames"] = sum(f["frames"] for f in files)
    written = sum(files[i]["bytes"] + files[i].get("mask_bytes", 0) for i in todo)
    rate = written / 1e6 / elapsed if elapsed > 0 else 0.0
    print(
        f"generated {kind} dataset at {root}: {_size(manifest)}; wrote "
        f"{written / 1e6:.1f} MB in {elapsed:.1f} s ({rate:.1f} MB/s, flushed to disk) "
        f"with {generation['processes']} process(es) x {generation['threads']} thread(s)"
    )
    paths = [root / f[key] for f in files for key in ("path", "mask") if key in f]
    manifest["repetition"] = repetition.measure(paths)
    write_manifest(root, manifest)
    print(f"repetition the storage could exploit: {repetition.describe(manifest['repetition'])}")
    sys.stdout.flush()
    return manifest


def _progress(
    kind: str, root: Path, params: Params, todo: list[int], per_job: float, todo_bytes: int
) -> GenerationProgress:
    """Progress over the jobs of this generation: videos report from their progress files,
    images count when done."""
    generator = GENERATORS[kind]
    outputs = {index: root / generator.outputs(params, index)[-1] for index in todo}
    frames = params.frames if isinstance(params, VideoGenerate) else None

    def running() -> list[tuple[str, dict[str, Any]]]:
        if frames is None:
            return []
        found = []
        for path in outputs.values():
            record = read_progress(path)
            if record and not path.exists():
                found.append((path.stem, record))
        return found

    def finished(done: int) -> tuple[int, int]:
        if frames is None:
            return int(done * per_job), 0
        complete = [path for path in outputs.values() if path.exists()]
        return sum(path.stat().st_size for path in complete), len(complete) * frames

    return GenerationProgress(
        f"generating {kind}",
        todo_bytes,
        frames * len(todo) if frames else None,
        running,
        finished,
    )


def _count(params: Params) -> tuple[str, int | None]:
    """What ``size`` resolved, and to how many."""
    if isinstance(params, VideoGenerate):
        return "frames per video", params.frames
    if isinstance(params, RecordsGenerate):
        return "files", params.files
    return "images", params.images


def _size(manifest: DatasetManifest) -> str:
    files = manifest.get("files", [])
    frames = manifest.get("total_frames")
    if manifest.get("kind") == "records":
        what = f"{len(files)} files, {sum(f.get('records', 0) for f in files)} records"
    elif frames:
        what = f"{len(files)} videos, {frames} frames"
    else:
        what = f"{len(files)} images"
    return f"{what}, {manifest.get('total_bytes', 0) / 1e6:.1f} MB"


def _bytes_under(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


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
