"""Bring your own data: check a folder of images or videos and index it (in the state folder of
``harness.data.index``: the folder itself is only read, so it may be read-only).

Expected layouts::

    images:  PATH/images/NAME.{jpg,jpeg,png,tif,tiff,bmp,webp,npy}  with masks
             PATH/masks/NAME.{png,tif,tiff,npy}
    videos:  PATH/**/NAME.{mp4,mkv,webm,mov,avi}  with optional lossless mask videos
             PATH/**/NAME.mask.{mkv,...} (gray, one mask frame per video frame)

Without masks the scenario must declare ``label_rule`` and the labels are recorded as derived.
Every file is checked from its header (an image's, with its end marker: a few kB per file; a video
is decoded at its first and last frame), so an unreadable or truncated file, a mask that is not
one channel or not its image's size, is named here, before any run relies on it; pixels that
cannot be decoded and mask values that are not class ids are named when first read. A video's
frames are counted from its packets (demuxed, never decoded) wherever its header's count does not
end where its last packets do; one holding fewer frames than it declares is named with both
counts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Required, TypedDict

from harness.data.byo_layout import (
    MASK_MARK,
    MASK_SUFFIXES,
    content_stamp,
    is_mask_video,
    listed_files,
)
from harness.data.index import index_file, read_index
from harness.data.manifest import DatasetManifest, FileRecord, new_manifest
from harness.data.pictures import read_header
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.files import ensure_writable_dir, write_json_atomic
from harness.progress import bar
from harness.scenario import ImageCollageDataset, VideoDataset

HEAD_PACKETS = 512  # packets whose timestamps tell a constant frame rate from a variable one
MAX_VARIABLE_RATE_FRAMES = 200_000  # their timestamps are kept in the index


def index_dataset(
    dataset: ImageCollageDataset | VideoDataset, *, min_side: int = 1, force: bool = False
) -> DatasetManifest:
    """Check the bring-your-own folder at ``dataset.path`` and write its index in the state
    folder (``harness.data.index``): the dataset itself is only read."""
    root = Path(dataset.path)
    candidates = listed_files(dataset)
    stamp = content_stamp(dataset, candidates)
    existing = None if force else read_index(root, stamp)  # --force rewrites a damaged one
    if existing is not None:
        print(f"bring-your-own {dataset.kind} at {root} is indexed and unchanged")
        return existing

    check = _check_image if dataset.kind == "image_collage" else _check_video
    files = [
        check(root, path, dataset, min_side)
        for path in bar(candidates, description="checking files", unit="file")
    ]
    labels = f"derived:{dataset.label_rule}" if dataset.label_rule else "masks"
    manifest = new_manifest(
        kind=dataset.kind,
        source="byo",
        fingerprint=stamp,
        classes=int(dataset.classes or 0),
        labels=labels,
        params={"label_rule": dataset.label_rule, "classes": dataset.classes},
    )
    manifest.update(
        {
            "complete": True,
            "dataset_path": str(root),
            "files": files,
            "total_bytes": sum(f["bytes"] + f.get("mask_bytes", 0) for f in files),
        }
    )
    if dataset.kind == "video":
        manifest["total_frames"] = sum(f["frames"] for f in files)
    target = index_file(root, stamp)
    ensure_writable_dir(target.parent)
    write_json_atomic(target, manifest)
    print(
        f"indexed bring-your-own {dataset.kind} at {root}: {len(files)} files, "
        f"{manifest['total_bytes'] / 1e6:.1f} MB, labels: {labels}; index: {target}"
    )
    return manifest


def _image_size(path: Path) -> tuple[int, int, int, str]:
    """(height, width, channels, Pillow mode or "npy:C") of an image file as shown (EXIF
    orientation applied), from its header alone: indexing a large set reads a few kB per file,
    never the pixels. Channels are 1 for single-channel modes, 3 for any other picture."""
    import numpy as np

    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path}: not a readable .npy array: {exc}") from None
        if (
            array.dtype != np.uint8
            or array.ndim not in (2, 3)
            or (array.ndim == 3 and (array.shape[2] not in (1, 3, 4)))
        ):
            raise HarnessError(
                f"{path}: expected a uint8 HxW, HxWx1, HxWx3 or HxWx4 array, got {array.dtype} "
                f"{array.shape}"
            )
        channels = array.shape[2] if array.ndim == 3 else 1
        return array.shape[0], array.shape[1], channels, f"npy:{channels}"
    header = read_header(path)
    return header.height, header.width, 1 if header.single_channel else 3, header.mode


class Geometry(TypedDict, total=False):
    """What a brought file's header says: its size as shown, and for a video its frames and
    how they are stored (the keys of a ``FileRecord`` after its path and size)."""

    frames: int
    width: Required[int]
    height: Required[int]
    mode: str  # images
    fps: float  # videos
    codec: str
    rotation: int
    video_streams: int
    pts: list[int]


def _record(root: Path, path: Path, min_side: int, geometry: Geometry) -> FileRecord:
    """The manifest record of one brought file: its path and size, then ``geometry`` in the
    order given (manifests keep their key order); refused when smaller than a crop."""
    width, height = geometry["width"], geometry["height"]
    if min(height, width) < min_side:
        raise HarnessError(f"{path}: {width}x{height} is smaller than pipeline.crop ({min_side})")
    return {"path": str(path.relative_to(root)), "bytes": path.stat().st_size, **geometry}


def _check_image(
    root: Path, path: Path, dataset: ImageCollageDataset | VideoDataset, min_side: int
) -> FileRecord:
    height, width, _channels, mode = _image_size(path)
    record = _record(root, path, min_side, {"width": width, "height": height, "mode": mode})
    if dataset.label_rule:
        return record
    mask = next(
        (
            root / "masks" / (path.stem + s)
            for s in MASK_SUFFIXES
            if (root / "masks" / (path.stem + s)).exists()
        ),
        None,
    )
    if mask is None:
        raise HarnessError(
            f"{path}: no mask masks/{path.stem}.png or .npy; add masks or set dataset.label_rule"
        )
    mask_height, mask_width, channels, mask_mode = _image_size(mask)
    if channels != 1:
        mode = f"{channels} channels" if mask_mode.startswith("npy") else f"mode {mask_mode}"
        raise HarnessError(
            f"{mask}: mask is {mode}, expected one channel of class ids (mode L, P, 1 or I;16)"
        )
    if (mask_height, mask_width) != (height, width):
        raise HarnessError(
            f"{mask}: mask is {mask_width}x{mask_height}, its image {path.name} is "
            f"{width}x{height} (both as their EXIF orientation shows them)"
        )
    record.update(
        {
            "mask": str(mask.relative_to(root)),
            "mask_bytes": mask.stat().st_size,
            "mask_mode": mask_mode,
        }
    )
    return record


def _check_video(
    root: Path, path: Path, dataset: ImageCollageDataset | VideoDataset, min_side: int
) -> FileRecord:
    probe = _probe(path)
    record = _record(root, path, min_side, probe)
    if dataset.label_rule:
        return record
    masks = sorted(p for p in path.parent.glob(f"{path.stem}{MASK_MARK}.*") if is_mask_video(p))
    if not masks:
        raise HarnessError(
            f"{path}: no mask video {path.stem}{MASK_MARK}.mkv beside it; add one or set "
            "dataset.label_rule"
        )
    mask = _probe(masks[0])
    frames, width, height = probe["frames"], probe["width"], probe["height"]
    if (mask["frames"], mask["width"], mask["height"]) != (frames, width, height):
        raise HarnessError(
            f"{masks[0]}: {mask['frames']} frames of {mask['width']}x{mask['height']}, "
            f"expected {frames} of {width}x{height} like its video"
        )
    record.update({"mask": str(masks[0].relative_to(root)), "mask_bytes": masks[0].stat().st_size})
    if "pts" in mask:
        record["mask_pts"] = mask["pts"]
    return record


def _probe(path: Path) -> Geometry:
    """Frame count and geometry (as shown) of a video, after decoding its first and last frames;
    variable frame rate, rotation and extra video streams noted in the record and said."""
    with VideoReader(path) as reader:
        frames, timestamps = _count_frames(path, reader)
        streams = reader.video_streams
    if streams > 1:
        print(f"note: {path}: {streams} video streams; the first is read")
    with VideoReader(path, timestamps=timestamps) as reader:
        try:
            first = reader.read(0)
            reader.read(frames - 1)
        except HarnessError as exc:
            detail = str(exc).removeprefix(f"{path}: ")
            raise HarnessError(f"{path}: corrupt or truncated video: {detail}") from None
        probe: Geometry = {
            "frames": frames,
            "width": int(first.shape[1]),
            "height": int(first.shape[0]),
            "fps": reader.mean_fps,
            "codec": reader.codec,
        }
        if reader.rotation:
            probe["rotation"] = reader.rotation
        if streams > 1:
            probe["video_streams"] = streams
        if timestamps is not None:
            probe["pts"] = timestamps
        return probe


def _count_frames(path: Path, reader: VideoReader) -> tuple[int, list[int] | None]:
    """(frames, their timestamps where they are off the rate's grid) of a video, from its
    packets, demuxed, never decoded: the header's count where the packets at its end agree
    with it, else every packet counted. Containers misdeclare (an audio track longer than the
    video, a late start); a file with fewer frames than it declares is named, whichever side
    is wrong: refused when its packets end early (cut short), said when frames are missing
    between its first and last (dropped when recorded, or damaged)."""
    declared = reader.declared_frames
    head = reader.packet_timestamps(HEAD_PACKETS)
    if not head:
        raise HarnessError(f"{path}: no video frames in its packets")
    complete = len(head) < HEAD_PACKETS  # the head holds every packet
    if reader.constant_rate(head) and declared > 0:
        if complete and len(head) == declared:
            return declared, None
        if not complete and _ends_as_declared(reader, declared):
            return declared, None  # the count its header declares ends where it says
    timestamps = head if complete else reader.packet_timestamps()
    missing = _check_declared(path, reader, declared, timestamps)
    if reader.constant_rate(timestamps):
        return len(timestamps), None
    if len(timestamps) > MAX_VARIABLE_RATE_FRAMES:
        raise HarnessError(
            f"{path}: variable frame rate with {len(timestamps)} frames (this harness "
            f"indexes up to {MAX_VARIABLE_RATE_FRAMES} frames of such a video); "
            "re-encode it at a constant rate (ffmpeg -fps_mode cfr)"
        )
    if not missing:
        print(f"note: {path}: variable frame rate; frames are indexed by their timestamps")
    return len(timestamps), timestamps


def _ends_as_declared(reader: VideoReader, declared: int) -> bool:
    """Whether the packets of the last GOP sit on the rate's grid, one per slot, the last at
    frame ``declared - 1``."""
    indices = [reader.index_of(pts) for pts in reader.tail_timestamps(declared)]
    return bool(indices) and indices == list(range(indices[0], declared))


def _check_declared(path: Path, reader: VideoReader, declared: int, timestamps: list[int]) -> bool:
    """Name a video whose packets hold fewer frames than its header declares: refused when they
    end more than a frame before the declared end, said when the missing ones lie between
    (then True)."""
    found = len(timestamps)
    if found >= declared:
        return False
    counts = f"{found} frames in its packets, its header declares {declared}"
    if reader.end_slot(timestamps) < declared - 1:
        raise HarnessError(f"{path}: truncated or damaged: {counts}")
    print(
        f"warning: {path}: {counts}, the missing ones between its first and last (dropped "
        "when recorded, or the file is damaged); the frames found are indexed by their timestamps",
        file=sys.stderr,
    )
    return True
