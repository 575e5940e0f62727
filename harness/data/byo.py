"""Bring your own data: check a folder of images or videos and index it in a dataset manifest.

Expected layouts::

    images:  PATH/images/NAME.{jpg,jpeg,png,npy}  with masks  PATH/masks/NAME.{png,npy}
    videos:  PATH/**/NAME.{mp4,mkv,webm,mov,avi}  with optional lossless mask videos
             PATH/**/NAME.mask.{mkv,...} (gray, one mask frame per video frame)

Without masks the scenario must declare ``label_rule`` and the labels are recorded as derived.
Every file is opened and checked (a video is decoded at its first and last frame), so a corrupt
or truncated file is named here, before any run relies on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.data.files import ensure_writable_dir
from harness.data.manifest import fingerprint, new_manifest, read_manifest, write_manifest
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.scenario import ImageCollageDataset, VideoDataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".npy")
MASK_SUFFIXES = (".png", ".npy")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
MASK_MARK = ".mask"


def index_dataset(
    dataset: ImageCollageDataset | VideoDataset, *, min_side: int = 1, force: bool = False
) -> dict[str, Any]:
    """Check the bring-your-own folder at ``dataset.path`` and write its ``dataset.json``."""
    root = Path(dataset.path)
    if not root.is_dir():
        raise HarnessError(f"dataset.path {root}: no such folder (bring-your-own data)")
    if dataset.kind == "image_collage":
        candidates = _image_candidates(root)
    else:
        candidates = _video_candidates(root)
    if not candidates:
        expected = "images/ with images" if dataset.kind == "image_collage" else "video files"
        raise HarnessError(f"{root}: no {expected} found ({', '.join(_suffixes(dataset))})")
    stamp = fingerprint(
        {
            "kind": dataset.kind,
            "label_rule": dataset.label_rule,
            "classes": dataset.classes,
            "files": [_stat(root, p) for p in candidates],
        }
    )
    existing = read_manifest(root)
    if existing and existing.get("fingerprint") == stamp and existing.get("complete") and not force:
        print(f"bring-your-own {dataset.kind} at {root} is indexed and unchanged")
        return existing

    check = _check_image if dataset.kind == "image_collage" else _check_video
    files = [
        check(root, path, dataset, min_side)
        for path in tqdm(candidates, desc="checking files", unit="file", disable=None, leave=False)
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
        complete=True,
        files=files,
        total_bytes=sum(f["bytes"] + f.get("mask_bytes", 0) for f in files),
    )
    if dataset.kind == "video":
        manifest["total_frames"] = sum(f["frames"] for f in files)
    try:
        ensure_writable_dir(root)
    except HarnessError as exc:
        raise HarnessError(f"{exc} (the index dataset.json is written there)") from None
    write_manifest(root, manifest)
    print(
        f"indexed bring-your-own {dataset.kind} at {root}: {len(files)} files, "
        f"{manifest['total_bytes'] / 1e6:.1f} MB, labels: {labels}"
    )
    return manifest


def _suffixes(dataset: ImageCollageDataset | VideoDataset) -> tuple[str, ...]:
    return IMAGE_SUFFIXES if dataset.kind == "image_collage" else VIDEO_SUFFIXES


def _image_candidates(root: Path) -> list[Path]:
    folder = root / "images"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _video_candidates(root: Path) -> list[Path]:
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.suffix.lower() in VIDEO_SUFFIXES and not path.stem.endswith(MASK_MARK):
                found.append(path)
    return sorted(found)


def _stat(root: Path, path: Path) -> list[Any]:
    info = path.stat()
    return [str(path.relative_to(root)), info.st_size, info.st_mtime_ns]


def _image_size(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) of an image file, checking that its data is readable."""
    import numpy as np

    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path}: not a readable .npy array: {exc}") from None
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise HarnessError(
                f"{path}: expected a uint8 HxW or HxWx3 array, got {array.dtype} {array.shape}"
            )
        return array.shape[0], array.shape[1], array.shape[2] if array.ndim == 3 else 1
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()  # decodes every byte: a truncated file fails here
            return picture.height, picture.width, len(picture.getbands())
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise HarnessError(f"{path}: corrupt or truncated image: {exc}") from None


def _record(root: Path, path: Path, min_side: int, **geometry: Any) -> dict[str, Any]:
    """The manifest record of one brought file: its path and size, then ``geometry`` in the
    order given (manifests keep their key order); refused when smaller than a crop."""
    width, height = geometry["width"], geometry["height"]
    if min(height, width) < min_side:
        raise HarnessError(f"{path}: {width}x{height} is smaller than pipeline.crop ({min_side})")
    return {"path": str(path.relative_to(root)), "bytes": path.stat().st_size, **geometry}


def _check_image(
    root: Path, path: Path, dataset: ImageCollageDataset | VideoDataset, min_side: int
) -> dict[str, Any]:
    height, width, _channels = _image_size(path)
    record = _record(root, path, min_side, width=width, height=height)
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
    mask_height, mask_width, channels = _image_size(mask)
    if (mask_height, mask_width) != (height, width) or channels != 1:
        raise HarnessError(
            f"{mask}: mask is {mask_width}x{mask_height}x{channels}, expected "
            f"{width}x{height} with one channel (class ids)"
        )
    record.update(mask=str(mask.relative_to(root)), mask_bytes=mask.stat().st_size)
    return record


def _check_video(
    root: Path, path: Path, dataset: ImageCollageDataset | VideoDataset, min_side: int
) -> dict[str, Any]:
    frames, width, height, fps, codec = _probe(path)
    record = _record(
        root, path, min_side, frames=frames, width=width, height=height, fps=fps, codec=codec
    )
    if dataset.label_rule:
        return record
    masks = sorted(path.parent.glob(f"{path.stem}{MASK_MARK}.*"))
    if not masks:
        raise HarnessError(
            f"{path}: no mask video {path.stem}{MASK_MARK}.mkv beside it; add one or set "
            "dataset.label_rule"
        )
    mask_frames, mask_width, mask_height, _fps, _codec = _probe(masks[0])
    if (mask_frames, mask_width, mask_height) != (frames, width, height):
        raise HarnessError(
            f"{masks[0]}: {mask_frames} frames of {mask_width}x{mask_height}, "
            f"expected {frames} of {width}x{height} like its video"
        )
    record.update(mask=str(masks[0].relative_to(root)), mask_bytes=masks[0].stat().st_size)
    return record


def _probe(path: Path) -> tuple[int, int, int, float, str]:
    """Frame count and geometry of a video, after decoding its first and last frames."""
    with VideoReader(path) as reader:
        frames = reader.declared_frames
        if frames <= 0:
            raise HarnessError(f"{path}: frame count unknown (no header count or duration)")
        try:
            reader.read(0)
            reader.read(frames - 1)
        except HarnessError as exc:
            detail = str(exc).removeprefix(f"{path}: ")
            raise HarnessError(f"{path}: corrupt or truncated video: {detail}") from None
        return frames, reader.width, reader.height, float(reader.fps), reader.codec
