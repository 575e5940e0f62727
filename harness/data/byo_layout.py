"""The files of a brought dataset folder: which are images, videos and masks, and the content
stamp (their names, sizes and modification times) that names the folder's index
(``harness.data.index``). Reading the folder's listing is all it does: checking the files is
``harness.data.byo``'s work.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.data.manifest import fingerprint
from harness.errors import HarnessError
from harness.files import file_kind
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
    _require_folder(root, f"dataset.path {root}", missing="no such folder (bring-your-own data)")
    if dataset.kind == "image_collage":
        candidates = _image_candidates(root)
    else:
        candidates = _video_candidates(root)
    if not candidates:
        expected = "images/ with images" if dataset.kind == "image_collage" else "video files"
        raise HarnessError(f"{root}: no {expected} found ({', '.join(_suffixes(dataset))})")
    return candidates


def listed_masks(root: Path, dataset: ImageCollageDataset | VideoDataset) -> list[Path]:
    """The mask files of a brought folder (none with a label rule), sorted, each checked like
    the files they label."""
    if dataset.label_rule:
        return []
    if dataset.kind == "image_collage":
        masks = root / "masks"
        if not _require_folder(masks, str(masks)):
            return []
        named = [p for p in _files_in(masks) if p.suffix.lower() in MASK_SUFFIXES]
    else:
        named = [p for p in _walk(root) if is_mask_video(p)]
    return sorted(_checked(p) for p in named)


def is_mask_video(path: Path) -> bool:
    """Whether ``path`` is named like a mask video (NAME.mask.mkv beside NAME.mp4)."""
    return path.suffix.lower() in VIDEO_SUFFIXES and path.stem.endswith(MASK_MARK)


def _suffixes(dataset: ImageCollageDataset | VideoDataset) -> tuple[str, ...]:
    return IMAGE_SUFFIXES if dataset.kind == "image_collage" else VIDEO_SUFFIXES


def _image_candidates(root: Path) -> list[Path]:
    folder = root / "images"
    if not _require_folder(folder, str(folder)):
        return []
    named = (p for p in _files_in(folder) if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(_checked(p) for p in named)


def _video_candidates(root: Path) -> list[Path]:
    named = (p for p in _walk(root) if p.suffix.lower() in VIDEO_SUFFIXES)
    return sorted(_checked(p) for p in named if not is_mask_video(p))


def _require_folder(path: Path, name: str, missing: str | None = None) -> bool:
    """Whether the folder ``path`` is there (False when it is not, unless ``missing`` says
    why that is an error); one line naming it when it is something else or cannot be reached."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if missing is None:
            return False
        raise HarnessError(f"{name}: {missing}") from None
    except OSError as exc:
        raise HarnessError(f"{name}: cannot reach it: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise HarnessError(f"{name}: not a folder (a {file_kind(info.st_mode)})")
    return True


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    """What a folder of the dataset holds; one line naming it when it cannot be listed (an
    unlisted folder would hide its files from the index without a word)."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:
        raise HarnessError(
            f"{folder}: cannot list this folder of the dataset: {exc.strerror or exc}"
        ) from None


def _files_in(folder: Path) -> list[Path]:
    """The entries of one folder (its subfolders left out: images/ and masks/ are flat)."""
    return [Path(e.path) for e in _listing(folder) if not e.is_dir(follow_symlinks=False)]


def _walk(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` that is not a folder, listing each folder through
    ``_listing`` (symlinks to folders are not followed, as ever: a loop cannot trap the walk)."""
    for entry in _listing(root):
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        else:
            yield Path(entry.path)


def _checked(path: Path) -> Path:
    """``path``, a file named like data, once it is known to be a readable regular file (after
    its symlinks): anything else is refused in one line naming it, and never opened (a named
    pipe would block the reader forever)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HarnessError(f"{path}: symlink loop, refused") from None
        if exc.errno == errno.ENOENT and path.is_symlink():
            target = os.readlink(path)
            raise HarnessError(f"{path}: dangling symlink (to {target}), refused") from None
        raise HarnessError(f"{path}: cannot reach it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise HarnessError(
            f"{path}: a {file_kind(info.st_mode)}, not a regular file: refused (only regular "
            "files, or symlinks to them, are read as data)"
        )
    if not os.access(path, os.R_OK):
        raise HarnessError(f"{path}: cannot read it: permission denied")
    return path


def _stat(root: Path, path: Path) -> list[Any]:
    info = path.stat()
    return [str(path.relative_to(root)), info.st_size, info.st_mtime_ns]
