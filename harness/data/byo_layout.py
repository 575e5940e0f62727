"""The files of a brought dataset folder: which are images, videos and masks, and the content
stamp (their names, sizes and modification times) that names the folder's index
(``harness.data.index``). Reading the folder's listing is all it does: checking the files is
``harness.data.byo``'s work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.data.manifest import fingerprint
from harness.errors import HarnessError
from harness.scenario import ImageCollageDataset, VideoDataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".npy")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
MASK_MARK = ".mask"
INDEX_VERSION = 2  # of what an index records per file; a new one re-indexes


def content_stamp(
    dataset: ImageCollageDataset | VideoDataset, candidates: list[Path] | None = None
) -> str:
    """A fingerprint of the brought folder's content (names, sizes and modification times of its
    files, masks included) and of the settings that shape its index."""
    root = Path(dataset.path)
    candidates = listed_files(dataset) if candidates is None else candidates
    masks = listed_masks(root, dataset)
    return fingerprint(
        {
            "index_version": INDEX_VERSION,
            "kind": dataset.kind,
            "label_rule": dataset.label_rule,
            "classes": dataset.classes,
            "files": [_stat(root, p) for p in candidates],
            "masks": [_stat(root, p) for p in masks],
        }
    )


def listed_files(dataset: ImageCollageDataset | VideoDataset) -> list[Path]:
    """The images (under images/) or videos (anywhere, mask videos left out) of a brought
    folder, sorted; an error naming the folder when there are none."""
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
    return candidates


def listed_masks(root: Path, dataset: ImageCollageDataset | VideoDataset) -> list[Path]:
    """The mask files of a brought folder (none with a label rule), sorted."""
    if dataset.label_rule:
        return []
    if dataset.kind == "image_collage":
        masks = root / "masks"
        return sorted(masks.iterdir()) if masks.is_dir() else []
    found: list[Path] = []
    for folder, _dirs, names in os.walk(root):
        found.extend(Path(folder) / n for n in names if Path(n).stem.endswith(MASK_MARK))
    return sorted(found)


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
