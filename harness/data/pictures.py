"""Pictures as the pipelines need them, whatever Pillow mode a brought file is in.

Images become RGB uint8 (HxWx3): gray, palette, alpha (dropped, not composited), CMYK, 1-bit,
16-bit and 32-bit integer and float pictures alike, turned as their EXIF orientation says. Deeper
than 8 bits is brought to 8 by its range: 16-bit (``I;16*``) divided by 257; 32-bit integer (``I``)
likewise when it holds values above 255, else taken as is; float (``F``) scaled by 255 when it lies
within 0..1, else clipped to 0..255. Masks stay one channel of class ids (``L``, ``P``: the palette
index, ``1``, ``I;16*``, ``I``), turned by their own EXIF orientation too.

``read_header`` opens a file lazily (Pillow reads the header, never the pixels), so that indexing
a large set costs a few kB per file; a truncated file is caught there from its last bytes (JPEG's
end-of-image marker, PNG's IEND chunk) and anything else from the pixels on first read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError, one_line

EXIF_ORIENTATION = 0x0112
TURNED_SIDEWAYS = {5, 6, 7, 8}  # orientations that swap width and height
MASK_MODES = ("L", "P", "1", "I;16", "I;16L", "I;16B", "I;16N", "I")
TAIL_BYTES = 4096  # where an intact file's end marker lies (some writers add trailing bytes)
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


@dataclass(frozen=True)
class PictureHeader:
    """What a picture's header says, its sides as shown (after EXIF orientation)."""

    width: int
    height: int
    mode: str
    format: str
    orientation: int  # EXIF orientation, 1 (as stored) to 8

    @property
    def single_channel(self) -> bool:
        return self.mode in MASK_MODES


def read_header(path: Path) -> PictureHeader:
    """A picture's geometry and mode from its header; unreadable or truncated files named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            orientation = _orientation(picture)
            width, height = picture.size
            header = PictureHeader(
                *((height, width) if orientation in TURNED_SIDEWAYS else (width, height)),
                mode=picture.mode,
                format=str(picture.format),
                orientation=orientation,
            )
    except (
        OSError,
        UnidentifiedImageError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise HarnessError(f"{path}: unreadable image: {_reason(exc)}") from None
    marker = _END_MARKERS.get(header.format)
    if marker is not None and not _ends_with(path, marker):
        raise HarnessError(f"{path}: corrupt or truncated image: no {header.format} end marker")
    return header


def _orientation(picture: Any) -> int:
    """EXIF orientation from the header. A PNG's ``getexif`` decodes the whole image to look for
    an eXIf chunk after the pixels; one before them is in ``info`` already."""
    if picture.format == "PNG":
        from PIL import Image

        raw = picture.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
    else:
        exif = picture.getexif()
    return int(exif.get(EXIF_ORIENTATION, 1) or 1)


def _ends_with(path: Path, marker: bytes) -> bool:
    with open(path, "rb") as handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(max(0, size - TAIL_BYTES))
        return marker in handle.read()


def decode_rgb(data: bytes, path: Path) -> np.ndarray:
    """The RGB uint8 pixels (HxWx3) of an encoded picture, as its EXIF orientation shows it."""
    return _decode(data, path, _rgb)


def decode_mask(data: bytes, path: Path) -> np.ndarray:
    """The class ids (HxW, uint8 or wider) of an encoded single-channel mask."""
    return _decode(data, path, _mask)


def _decode(data: bytes, path: Path, convert: Any) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            ImageOps.exif_transpose(picture, in_place=True)  # no copy when already upright
            return convert(picture, path)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise HarnessError(f"{path}: corrupt or truncated image: {_reason(exc)}") from None


def _rgb(picture: Any, path: Path) -> np.ndarray:
    mode = picture.mode
    if mode == "RGB":
        return np.asarray(picture)
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = np.asarray(picture)
        if mode == "F":
            values = np.nan_to_num(gray.astype(np.float32))
            scale = 255.0 if values.size and values.min() >= 0 and values.max() <= 1 else 1.0
            gray = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        elif mode.startswith("I;16") or (gray.size and gray.max() > 255):
            gray = (np.clip(gray.astype(np.int64), 0, 65535) // 257).astype(np.uint8)
        else:
            gray = np.clip(gray, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "La":  # premultiplied gray + alpha: Pillow converts it only by way of LA
        picture = picture.convert("LA")
    try:
        return np.asarray(picture.convert("RGB"))
    except (ValueError, OSError) as exc:
        raise HarnessError(
            f"{path}: image mode {mode} cannot be read as RGB: {_reason(exc)}"
        ) from None


def _mask(picture: Any, path: Path) -> np.ndarray:
    if picture.mode not in MASK_MODES:
        raise HarnessError(
            f"{path}: mask has mode {picture.mode} ({len(picture.getbands())} channels); "
            "expected one channel of class ids"
        )
    values = np.asarray(picture)
    return values.astype(np.uint8) if values.dtype == bool else values


def to_rgb(array: np.ndarray) -> np.ndarray:
    """An ``npy`` image's crop as HxWx3: gray (HxW or HxWx1) repeated, alpha dropped."""
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[:, :, :3]


def checked_classes(mask: np.ndarray, classes: int, path: Path) -> np.ndarray:
    """``mask`` as uint8 class ids, or an error naming the file and the first id out of range."""
    if mask.size and int(mask.max()) >= classes:
        row, col = np.argwhere(mask >= classes)[0]
        raise HarnessError(
            f"{path}: mask value {int(mask[row, col])} (row {row}, column {col} of the crop) is "
            f"not a class id: dataset.classes is {classes}, so ids run 0..{classes - 1}"
        )
    return mask.astype(np.uint8, copy=False)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc, 200)}"
