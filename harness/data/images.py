"""Reading and writing single images and masks in the dataset and cache formats.

``npy`` is raw uint8 (memory-mappable), ``png`` is lossless, ``jpeg`` is lossy; masks are always
written lossless (``npy`` or ``png``). Writes are atomic; a CRC-32 of the bytes is returned for
cache manifests when asked for.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import IO, cast

import numpy as np

from harness.files import atomic_write

SUFFIX = {"npy": ".npy", "png": ".png", "jpeg": ".jpg"}


class _Writer:
    """A write-only file wrapper, optionally keeping a running CRC-32 of what passes through.

    Arrays go through plain ``write`` calls rather than NumPy's ``tofile``, whose short write on a
    full disk raises an OSError without errno; ``write`` raises ENOSPC, a clear message.
    """

    def __init__(self, handle: IO[bytes], checksum: bool) -> None:
        self._handle = handle
        self._checksum = checksum
        self.crc = 0

    def write(self, data: bytes | memoryview) -> int:
        if self._checksum:
            self.crc = zlib.crc32(data, self.crc)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()


def write_image(
    path: Path, array: np.ndarray, image_format: str, *, quality: int = 90, checksum: bool = False
) -> int:
    """Write ``array`` (HxWx3 image or HxW mask, uint8) atomically; return the CRC-32 or 0.

    PNG uses a fast zlib level: these files are a benchmark's data, not an archive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        sink = _Writer(handle, checksum)
        if image_format == "npy":
            array = np.ascontiguousarray(array)
            header = np.lib.format.header_data_from_array_1_0(array)
            np.lib.format.write_array_header_1_0(sink, header)
            sink.write(array.data.cast("B"))  # one write, no intermediate copy
        else:
            from PIL import Image

            picture = Image.fromarray(array)
            # Pillow's hint asks for a whole IO[bytes]; writing PNG and JPEG it only calls
            # write and flush (and fileno, guarded), which the wrapper has.
            target = cast(IO[bytes], sink)
            if image_format == "png":
                picture.save(target, format="PNG", compress_level=1)
            else:
                picture.save(target, format="JPEG", quality=quality)
    return sink.crc


def read_image(path: Path) -> np.ndarray:
    """The whole array of an image or mask file (``.npy`` loaded, PNG/JPEG decoded)."""
    if path.suffix == ".npy":
        return np.load(path)
    from PIL import Image

    with Image.open(path) as picture:
        return np.asarray(picture)
