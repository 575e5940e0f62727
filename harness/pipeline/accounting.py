"""Byte accounting: the bytes each sample asked the storage for, in all and page by page.

A run compares what its sources asked for with what the kernel reports having read. A page asked
for twice is read from storage once (the page cache keeps it), so besides all the bytes asked for,
each process keeps a ledger of the pages it already asked for and counts the first-time bytes
separately. Sources count their own reads (``Reads``); a decoder that reads through a file object
is handed a ``CountingFile``, which counts for it.
"""

from __future__ import annotations

import io
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PAGE = mmap.PAGESIZE


class PageLedger:
    """The pages of each file this process has already asked for.

    A page asked for twice is read from storage once (the page cache keeps it), so the bytes the
    kernel reports are to be compared with the bytes asked for the first time, page by page.
    One byte per 4 KiB page: 24 MB per worker for a 99 GB dataset.
    """

    def __init__(self) -> None:
        self._seen: dict[str, np.ndarray] = {}

    def note(self, path: str, pages: np.ndarray, file_size: int) -> int:
        """Mark ``pages`` (page numbers) of ``path`` as asked for; return the bytes of those
        that were not asked for before."""
        seen = self._seen.get(path)
        if seen is None:
            seen = self._seen[path] = np.zeros(-(-file_size // PAGE), dtype=bool)
        pages = pages[pages < seen.size]
        fresh = np.unique(pages[~seen[pages]])
        seen[fresh] = True
        return int(fresh.size) * PAGE

    def note_range(self, path: str, offset: int, length: int, file_size: int) -> int:
        """``note`` for the pages under ``length`` bytes at ``offset``."""
        if length <= 0:
            return 0
        return self.note(
            path, np.arange(offset // PAGE, (offset + length - 1) // PAGE + 1), file_size
        )


@dataclass
class Reads:
    """Bytes one sample asked the storage for: all of them, and those asked for the first time."""

    requested: int = 0
    first_time: int = 0

    def add(self, requested: int, first_time: int) -> None:
        self.requested += requested
        self.first_time += first_time


class CountingFile(io.FileIO):
    """A file whose reads are counted: the bytes the decoder asked the storage for, in all and
    for the first time (through the source's page ledger)."""

    def __init__(self, path: Path, ledger: PageLedger) -> None:
        super().__init__(path, "r")
        self.key, self.size, self.ledger = str(path), os.fstat(self.fileno()).st_size, ledger
        self.reads = Reads()

    def _count(self, offset: int, count: int) -> None:
        self.reads.add(count, self.ledger.note_range(self.key, offset, count, self.size))

    def readinto(self, buffer: Any) -> int | None:  # type: ignore[override]
        offset = self.tell()
        count = super().readinto(buffer)
        if count:
            self._count(offset, count)
        return count

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        offset = self.tell()
        data = super().read(size)
        self._count(offset, len(data))
        return data


def pages_touched(array: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """The distinct page numbers a crop of a C-ordered (memory-mapped) array lies on."""
    row_bytes = array.strides[0]
    pixel = array.strides[1]
    base = array.offset if isinstance(array, np.memmap) else 0
    row_numbers = np.arange(rows.start, rows.stop, dtype=np.int64)
    starts = base + row_numbers * row_bytes + cols.start * pixel
    ends = starts + (cols.stop - cols.start) * pixel - 1
    first, last = starts // PAGE, ends // PAGE
    counts = last - first + 1
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.unique(np.repeat(first, counts) + offsets)
