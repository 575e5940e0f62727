"""The frame cache of the "cached" video mode: every video decoded once, frames stored as files.

Layout of a cache folder::

    cache.json                               written last: its presence with "complete": true and
                                             the right fingerprint is what makes a cache usable
    .harness-frame-cache                     marker: this folder belongs to the harness
    cam000/00000000/00000123.npy             frame 123 of cam000 (npy | jpg | png)
    cam000/00000000/00000123.mask.npy        its class mask (npy | png: always lossless)
    cam000/seg_00000000.json                 segment manifest: files, bytes, CRC-32 checksums

Work is split into segments of ``segment_frames`` consecutive frames of one video: the unit of
parallelism and of resume. A segment counts as done only once its manifest is written (after all
its files), so a killed build resumes at the first unfinished segment and never trusts a partial
one; frames are written atomically, so no file that looks complete is ever partial.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypedDict, cast

import numpy as np

from harness.data.images import SUFFIX, write_image
from harness.data.index import dataset_manifest as dataset_index
from harness.data.labels import derive_mask
from harness.data.manifest import DatasetManifest, FileRecord, fingerprint
from harness.data.parallel import available_cpus, run_parallel
from harness.data.pictures import checked_classes
from harness.data.tracks import Tracks
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.files import (
    DATASET_JSON,
    atomic_write,
    check_format,
    ensure_writable_dir,
    read_json,
    sweep_temporaries,
    sync_filesystem,
    write_json_atomic,
)
from harness.scenario import FrameCache, Scenario

FORMAT = "harness-frame-cache"
SEGMENT_FORMAT = "harness-frame-cache-segment"
FORMAT_VERSION = 1
MANIFEST_NAME = "cache.json"
MARKER_NAME = ".harness-frame-cache"


class CachedVideo(TypedDict):
    """One video of the cache: where its frames are (``id``) and their geometry."""

    path: str  # in the dataset
    id: str  # its folder in the cache (``video_id``)
    frames: int
    width: int
    height: int


class CacheBuild(TypedDict):
    """How the cache's last build ran."""

    seconds: float
    processes: int
    frames_decoded: int  # by that build (a resumed build decodes only what was missing)


class CachedDataset(TypedDict):
    path: str
    fingerprint: str


class CacheManifest(TypedDict):
    """``cache.json``: a complete cache, totalled from its segments (``_cache_manifest``)."""

    format: str
    format_version: int
    fingerprint: str
    complete: bool
    dataset: CachedDataset
    format_name: str  # npy | jpeg | png
    jpeg_quality: int | None
    segment_frames: int
    videos: list[CachedVideo]
    frames: int
    frame_bytes: int
    mask_bytes: int
    video_bytes: int
    expansion: float | None  # frame bytes over video bytes; None without video bytes
    expansion_with_masks: float | None
    build: CacheBuild
    created: str


class SegmentManifest(TypedDict):
    """A finished segment's manifest: frames [start, stop) of one video."""

    format: str
    format_version: int
    fingerprint: str
    video: str
    start: int
    stop: int
    frame_bytes: int
    mask_bytes: int
    files: list[tuple[str, int, int]]  # (path in the cache, bytes, CRC-32), as JSON arrays


def video_id(relative_path: str) -> str:
    """Folder name of a video's frames: its path in the dataset, flattened, without suffix."""
    return str(Path(relative_path).with_suffix("")).replace(os.sep, "__").replace("videos__", "", 1)


def frame_path(cache_dir: Path, video: str, index: int, segment_frames: int, fmt: str) -> Path:
    start = index - index % segment_frames
    return cache_dir / video / f"{start:08d}" / f"{index:08d}{SUFFIX[fmt]}"


def mask_path(cache_dir: Path, video: str, index: int, segment_frames: int, fmt: str) -> Path:
    start = index - index % segment_frames
    suffix = ".mask.npy" if fmt == "npy" else ".mask.png"
    return cache_dir / video / f"{start:08d}" / f"{index:08d}{suffix}"


def cache_fingerprint(dataset_manifest: DatasetManifest, cache: FrameCache) -> str:
    return fingerprint(
        {
            "dataset": dataset_manifest["fingerprint"],
            "cache": cache.model_dump(mode="json", exclude={"path", "workers"}),
            "format_version": FORMAT_VERSION,
        }
    )


def read_cache_manifest(scenario: Scenario) -> CacheManifest:
    """The manifest of the scenario's complete, up-to-date cache; otherwise a clear error.

    This is the only way the pipeline gets at a cache, so an incomplete or stale one is never used.
    """
    cache = scenario.pipeline.cache
    assert cache is not None
    cache_dir = Path(cache.path)
    dataset_manifest = dataset_index(scenario.dataset)
    manifest = read_json(cache_dir / MANIFEST_NAME, DATASET_JSON)
    if manifest is None:
        raise HarnessError(
            f"no complete frame cache at {cache_dir}: build it with `harness cache SCENARIO`"
        )
    check_format(cache_dir / MANIFEST_NAME, manifest, FORMAT, FORMAT_VERSION)
    if manifest.get("fingerprint") != cache_fingerprint(dataset_manifest, cache):
        raise HarnessError(
            f"frame cache at {cache_dir} was built from another dataset or with other settings: "
            "rebuild it with `harness cache SCENARIO`"
        )
    # check_format passed it: its format version says which keys it has (the one unchecked step)
    return cast(CacheManifest, manifest)


def build_caches(scenarios: Sequence[Scenario], *, force: bool = False) -> list[CacheManifest]:
    """Build the frame cache of every cached-mode scenario (once per cache folder)."""
    built, seen = [], set()
    for scenario in scenarios:
        cache = scenario.pipeline.cache
        if scenario.pipeline.mode != "cached" or cache is None or cache.path in seen:
            continue
        seen.add(cache.path)
        built.append(build_cache(scenario, force=force))
    if not built:
        print("no scenario here uses the cached video mode: nothing to build")
    return built


def build_cache(scenario: Scenario, *, force: bool = False) -> CacheManifest:
    """Decode every frame of the scenario's videos into its frame cache; resume what was begun."""
    cache = scenario.pipeline.cache
    assert cache is not None and scenario.dataset.kind == "video"
    dataset_dir, cache_dir = Path(scenario.dataset.path), Path(cache.path)
    dataset = dataset_index(scenario.dataset)
    wanted = cache_fingerprint(dataset, cache)
    ensure_writable_dir(cache_dir)
    _claim_folder(cache_dir, wanted, force)
    existing = read_json(cache_dir / MANIFEST_NAME, DATASET_JSON)
    if existing is not None and existing.get("fingerprint") == wanted and existing.get("complete"):
        # The fingerprint covers the format version: this is a manifest of this format.
        up_to_date = cast(CacheManifest, existing)
        print(f"frame cache at {cache_dir} is up to date ({_describe(up_to_date)})")
        return up_to_date
    sweep_temporaries(cache_dir)

    jobs = _pending_segments(dataset_dir, cache_dir, dataset, cache, wanted)
    total_segments = sum(-(-r["frames"] // cache.segment_frames) for r in dataset["files"])
    if len(jobs) < total_segments:
        print(f"resuming: {total_segments - len(jobs)} of {total_segments} segments already built")
    processes = max(1, min(cache.workers or available_cpus(), len(jobs)))
    started = time.perf_counter()
    run_parallel(
        build_segment, jobs, processes=processes, description="building frame cache", unit="segment"
    )
    sync_filesystem(cache_dir)
    elapsed = time.perf_counter() - started

    decoded_now = sum(stop - start for *_head, start, stop, _cache, _fp in jobs)
    build: CacheBuild = {
        "seconds": round(elapsed, 3),
        "processes": processes,
        "frames_decoded": decoded_now,
    }
    manifest = _cache_manifest(dataset_dir, cache_dir, dataset, cache, wanted, build)
    write_json_atomic(cache_dir / MANIFEST_NAME, manifest)
    rate = decoded_now / elapsed if elapsed > 0 else 0.0
    print(
        f"built frame cache at {cache_dir}: {_describe(manifest)}; decoded {decoded_now} frames "
        f"in {elapsed:.1f} s ({rate:.0f} frames/s, flushed to disk) with {processes} process(es)"
    )
    return manifest


SegmentJob = tuple[str, str, DatasetManifest, FileRecord, int, int, FrameCache, str]


def _pending_segments(
    dataset_dir: Path, cache_dir: Path, dataset: DatasetManifest, cache: FrameCache, wanted: str
) -> list[SegmentJob]:
    """The ``build_segment`` arguments of every segment not yet in the cache."""
    jobs: list[SegmentJob] = []
    for record in dataset["files"]:
        for start in range(0, record["frames"], cache.segment_frames):
            stop = min(start + cache.segment_frames, record["frames"])
            if _segment_done(cache_dir, video_id(record["path"]), start, wanted) is None:
                jobs.append(
                    (str(dataset_dir), str(cache_dir), dataset, record, start, stop, cache, wanted)
                )
    return jobs


def _cache_manifest(
    dataset_dir: Path,
    cache_dir: Path,
    dataset: DatasetManifest,
    cache: FrameCache,
    wanted: str,
    build: CacheBuild,
) -> CacheManifest:
    """The complete cache's manifest, totalled from its segments' records."""
    found = [
        _segment_done(cache_dir, video_id(record["path"]), start, wanted)
        for record in dataset["files"]
        for start in range(0, record["frames"], cache.segment_frames)
    ]
    segments = [segment for segment in found if segment is not None]
    assert len(segments) == len(found)
    frames = sum(s["stop"] - s["start"] for s in segments)
    frame_bytes = sum(s["frame_bytes"] for s in segments)
    mask_bytes = sum(s["mask_bytes"] for s in segments)
    video_bytes = sum(record["bytes"] for record in dataset["files"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": wanted,
        "complete": True,
        "dataset": {"path": str(dataset_dir), "fingerprint": dataset["fingerprint"]},
        "format_name": cache.format,
        "jpeg_quality": cache.jpeg_quality if cache.format == "jpeg" else None,
        "segment_frames": cache.segment_frames,
        "videos": [
            {
                "path": r["path"],
                "id": video_id(r["path"]),
                "frames": r["frames"],
                "width": r["width"],
                "height": r["height"],
            }
            for r in dataset["files"]
        ],
        "frames": frames,
        "frame_bytes": frame_bytes,
        "mask_bytes": mask_bytes,
        "video_bytes": video_bytes,
        # The study's trade-off: how much more storage the decoded frames take than the videos.
        "expansion": round(frame_bytes / video_bytes, 3) if video_bytes else None,
        "expansion_with_masks": round((frame_bytes + mask_bytes) / video_bytes, 3)
        if video_bytes
        else None,
        "build": build,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def build_segment(
    dataset_dir: str,
    cache_dir: str,
    dataset: DatasetManifest,
    record: FileRecord,
    start: int,
    stop: int,
    cache: FrameCache,
    wanted: str,
) -> None:
    """Decode frames [start, stop) of one video into the cache, then write the segment manifest."""
    root, out = Path(dataset_dir), Path(cache_dir)
    video = video_id(record["path"])
    mask_format = "npy" if cache.format == "npy" else "png"
    files: list[tuple[str, int, int]] = []
    frame_bytes = mask_bytes = 0
    for index, image, mask in _frames_with_masks(root, dataset, record, start, stop):
        for path, array, fmt in (
            (
                frame_path(out, video, index, cache.segment_frames, cache.format),
                image,
                cache.format,
            ),
            (mask_path(out, video, index, cache.segment_frames, cache.format), mask, mask_format),
        ):
            crc = write_image(path, array, fmt, quality=cache.jpeg_quality, checksum=True)
            size = path.stat().st_size
            files.append((str(path.relative_to(out)), size, crc))
            if array is image:
                frame_bytes += size
            else:
                mask_bytes += size
    written = len(files) // 2
    if written != stop - start:
        raise HarnessError(
            f"{root / record['path']}: decoded {written} of frames {start}..{stop - 1}: the video "
            "is shorter than its manifest says (truncated?)"
        )
    segment: SegmentManifest = {
        "format": SEGMENT_FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": wanted,
        "video": record["path"],
        "start": start,
        "stop": stop,
        "frame_bytes": frame_bytes,
        "mask_bytes": mask_bytes,
        "files": files,
    }
    write_json_atomic(_segment_manifest_path(out, video, start), segment)


def _frames_with_masks(
    root: Path, dataset: DatasetManifest, record: FileRecord, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(index, RGB frame, mask) for frames [start, stop), masks from whichever source the
    dataset has: object tracks (generated), a lossless mask video, or a label rule."""
    with VideoReader(root / record["path"], timestamps=record.get("pts")) as reader:
        frames = reader.frames(start, stop)
        if "tracks" in record:
            tracks = Tracks.load(root / record["tracks"])
            for index, image in frames:
                yield index, image, tracks.mask(index)
        elif "mask" in record:
            with VideoReader(
                root / record["mask"], timestamps=record.get("mask_pts")
            ) as mask_reader:
                masks = mask_reader.frames(start, stop, pixel_format="gray")
                for (index, image), (mask_index, mask) in zip(frames, masks, strict=False):
                    if mask_index != index:
                        raise HarnessError(
                            f"{root / record['mask']}: mask frame {mask_index} "
                            f"does not line up with video frame {index}"
                        )
                    classes = int(dataset["classes"])
                    yield index, image, checked_classes(mask, classes, root / record["mask"])
        else:
            rule = str(dataset["labels"]).removeprefix("derived:")
            for index, image in frames:
                yield index, image, derive_mask(image, rule, int(dataset["classes"]))


def _segment_manifest_path(cache_dir: Path, video: str, start: int) -> Path:
    return cache_dir / video / f"seg_{start:08d}.json"


def _segment_done(cache_dir: Path, video: str, start: int, wanted: str) -> SegmentManifest | None:
    """A finished segment's manifest, or None when the segment still has to be built."""
    path = _segment_manifest_path(cache_dir, video, start)
    try:
        document = read_json(path, DATASET_JSON)
    except HarnessError:
        return None  # unreadable: rebuild it
    if document is None or document.get("fingerprint") != wanted:
        return None
    # The fingerprint covers the format version: this is a segment manifest of this format.
    return cast(SegmentManifest, document)


def _claim_folder(cache_dir: Path, wanted: str, force: bool) -> None:
    """Make sure the cache folder is ours and matches ``wanted``; clear it when it does not.

    A folder that holds other files and no marker is refused: the harness never deletes
    anything it did not write.
    """
    marker = cache_dir / MARKER_NAME
    if marker.exists():
        if force or marker.read_text().strip() != wanted:
            for child in cache_dir.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                elif child.name != MARKER_NAME:
                    child.unlink()
    elif any(cache_dir.iterdir()):
        raise HarnessError(
            f"{cache_dir} is not empty and is not a harness frame cache: choose an empty folder "
            "for pipeline.cache.path"
        )
    with atomic_write(marker, fsync=True) as handle:
        handle.write(f"{wanted}\n".encode())


def _describe(manifest: CacheManifest) -> str:
    return (
        f"{manifest['frames']} frames, {manifest['frame_bytes'] / 1e6:.1f} MB of "
        f"{manifest['format_name']} frames + {manifest['mask_bytes'] / 1e6:.1f} MB of masks from "
        f"{manifest['video_bytes'] / 1e6:.1f} MB of video: expansion {manifest['expansion']}x"
    )
