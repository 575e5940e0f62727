"""Page-cache honesty: start a run cold or warm on purpose, and prove which one it was.

A dataset that fits in RAM and was just written or read is served from the page cache, so a run
on it measures memory, not the storage under test. :func:`evict` drops a dataset's pages without
root (``posix_fadvise(POSIX_FADV_DONTNEED)``, unlike ``drop_caches``, which needs root and flushes
every file on the machine); :func:`warm` reads it all once; :func:`resident_bytes` asks the kernel
(``mincore(2)``) how much of it is in memory, so a summary can say how cold a "cold" run was.

Files are handled one at a time with their own descriptor and mapping, released before the next,
so thousands of files or files larger than RAM cost no more than one window of bookkeeping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import NotRequired, TypedDict

from harness.errors import HarnessError

READ_CHUNK = 8 * 2**20  # large sequential reads keep readahead streaming
WINDOW = 2**30  # bytes mapped and queried per mincore() call: bounds the vector to 256 KiB
_LOW_BIT = bytes(b & 1 for b in range(256))  # mincore(2): only the lowest bit of each byte counts


def evict(paths: Iterable[Path], *, flush: bool = True) -> int:
    """Drop the cached pages of every file; return the bytes the files hold.

    Dirty pages cannot be dropped, so each file is flushed (``fdatasync``) first, unless
    ``flush`` is False (the caller synced the whole file system just before: on a network mount
    a flush per file is a round trip to the server per file). The kernel may still keep pages
    that another process has mapped or locked; :func:`resident_bytes` tells.
    """
    covered = 0
    for path in paths:
        with _open(path) as (fd, size):
            _evict_open(path, fd, flush)
            covered += size
    return covered


def _evict_open(path: Path, fd: int, flush: bool) -> None:
    try:
        if flush:
            os.fdatasync(fd)
    except OSError as exc:
        # Filesystems with nothing to flush (read-only, some FUSE) may refuse; that is fine.
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):
            raise _error(path, "cannot flush", exc) from None
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError as exc:
        raise _error(path, "cannot evict from the page cache", exc) from None


def warm(paths: Iterable[Path]) -> int:
    """Read every file once, start to end, in large chunks; return the bytes read."""
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    total = 0
    for path in paths:
        with _open(path) as (fd, _size):
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
                while True:
                    count = os.readv(fd, [view])
                    if count == 0:
                        break
                    total += count
            except OSError as exc:
                raise _error(path, "cannot read", exc) from None
    return total


def resident_bytes(paths: Iterable[Path]) -> tuple[int, int]:
    """(bytes in the page cache, bytes in total) over all files; empty files are skipped.

    Each file is mapped read-only (which reads nothing) and ``mincore(2)`` reports, per page,
    whether it is resident. A resident last page counts only the bytes the file has in it, so the
    resident figure never exceeds the total.
    """
    resident = total = 0
    for in_file, _whole_pages, size in _residency(paths):
        resident += in_file
        total += size
    return resident, total


def resident_page_bytes(paths: Iterable[Path]) -> int:
    """The resident pages of all files, in bytes of whole pages: what the kernel read to bring
    them in (a file's partly filled last page is a whole page read), as ``read_bytes`` counts."""
    return sum(whole_pages for _in_file, whole_pages, _size in _residency(paths))


def _residency(
    paths: Iterable[Path], *, evict_first: bool = False, flush: bool = True
) -> Iterator[tuple[int, int, int]]:
    """Per file: (resident bytes within its size, resident bytes in whole pages, size).
    ``evict_first``: evict the file (``evict``, flushing it first with ``flush``) in the same
    open, just before asking: one open per file, which on a network mount is a call to the
    server."""
    page = os.sysconf("SC_PAGE_SIZE")
    window = max(page, WINDOW // page * page)
    vector = (ctypes.c_ubyte * (window // page))()
    for path in paths:
        with _open(path) as (fd, size):
            if evict_first:
                _evict_open(path, fd, flush)
            if size == 0:
                continue
            in_file = whole = 0
            for offset in range(0, size, window):
                length = min(window, size - offset)
                pages = -(-length // page)
                try:
                    count = _resident_pages(fd, offset, length, vector, pages)
                except OSError as exc:
                    raise _error(path, "cannot query the page cache", exc) from None
                whole += count * page
                in_file += count * page
                if vector[pages - 1] & 1:
                    in_file -= pages * page - length  # the last page is partly past the end
            yield in_file, whole, size


def resident_vector(fd: int, offset: int, length: int) -> bytes:
    """One byte per page of ``fd``'s [offset, offset + length) (``offset`` a page multiple): 1
    where the page is in the page cache now, 0 where a read would have to fetch it."""
    page = os.sysconf("SC_PAGE_SIZE")
    pages = -(-length // page)
    if pages <= 0:
        return b""
    vector = (ctypes.c_ubyte * pages)()
    _resident_pages(fd, offset, length, vector, pages)
    return bytes(vector).translate(_LOW_BIT)


def resident_mapped(address: int, length: int) -> bytes:
    """``resident_vector`` for memory already mapped at ``address`` (page-aligned)."""
    page = os.sysconf("SC_PAGE_SIZE")
    pages = -(-length // page)
    if pages <= 0:
        return b""
    vector = (ctypes.c_ubyte * pages)()
    if _libc().mincore(ctypes.c_void_p(address), length, vector) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return bytes(vector).translate(_LOW_BIT)


class Residency:
    """Which pages of one open file are in the page cache, asked as often as needed: the file is
    mapped once (a mapping reads nothing) and each question is one ``mincore`` call."""

    def __init__(self, fd: int, size: int) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.size, self.address = size, None
        if size > 0:
            address = _libc().mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if address is None or address == _MAP_FAILED:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            self.address = address

    def run(self, first_page: int, max_pages: int) -> int:
        """How many consecutive pages from ``first_page`` on are resident (at most
        ``max_pages``, never past the end): what the kernel read ahead of a read ending
        there."""
        pages = min(max_pages, -(-self.size // self.page) - first_page)
        if self.address is None or pages <= 0:
            return 0
        vector = (ctypes.c_ubyte * pages)()
        where = ctypes.c_void_p(self.address + first_page * self.page)
        if _libc().mincore(where, pages * self.page, vector) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        run = bytes(vector).translate(_LOW_BIT).find(b"\x00")
        return pages if run < 0 else run

    def vector(self, first_page: int, pages: int) -> bytes:
        """One byte per page from ``first_page`` (never past the end): 1 resident, 0 not."""
        pages = min(pages, -(-self.size // self.page) - first_page)
        if self.address is None or pages <= 0:
            return b""
        return resident_mapped(self.address + first_page * self.page, pages * self.page)

    def close(self) -> None:
        if self.address is not None:
            _libc().munmap(ctypes.c_void_p(self.address), self.size)
            self.address = None


def _resident_pages(fd: int, offset: int, length: int, vector: ctypes.Array, pages: int) -> int:
    """How many of the ``pages`` pages of ``fd``'s [offset, offset + length) are in memory;
    ``vector`` keeps the per-page answer for the caller."""
    libc = _libc()
    address = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    if address is None or address == _MAP_FAILED:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    try:
        if libc.mincore(ctypes.c_void_p(address), length, vector) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        libc.munmap(ctypes.c_void_p(address), length)
    return bytes(vector[:pages]).translate(_LOW_BIT).count(1)


_MAP_FAILED = ctypes.c_void_p(-1).value


@cache
def _libc() -> ctypes.CDLL:
    """libc with the prototypes of mmap, munmap and mincore declared, so that 64-bit addresses
    and sizes pass intact (ctypes assumes int otherwise)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.restype = ctypes.c_int
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


@contextmanager
def _open(path: Path) -> Iterator[tuple[int, int]]:
    """(descriptor, size) of a regular file, read-only; a one-line error naming it otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO by mistake must fail below, not wait forever for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise _error(path, "cannot open", exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HarnessError(f"{path}: not a regular file")
        yield fd, info.st_size
    finally:
        os.close(fd)


def _error(path: Path, action: str, exc: OSError) -> HarnessError:
    return HarnessError(f"{action} {path}: {exc.strerror or exc}")


class PageCacheRecord(TypedDict):
    """How a run's page-cache condition went (:func:`prepare`), kept in its summary as
    ``page_cache``."""

    condition: str  # what was achieved: "cold", "partly warm" or "warm"
    requested: str  # what the scenario asked for
    evictions: int
    dataset_files: int
    dataset_bytes: int
    resident_bytes_at_start: int
    resident_fraction_at_start: float | None  # None: an empty dataset
    resident_page_bytes_at_start: int | None  # whole pages; cold runs only
    ram_bytes: int
    seconds: float
    # Added once the loop has ended (one host): what the summary's read cross-check counts.
    resident_page_bytes_at_end: NotRequired[int]


COLD_RESIDENT_LIMIT = 0.01  # a "cold" start with more of the dataset in memory is not cold
EVICTIONS = 3  # tries: pages being written back or briefly mapped may need a second pass


def lab_export_files(files: list[Path]) -> list[Path]:
    """The export-side files of ``files`` that lie on a mount of the harness's lab, if one is
    up (the storage host serving them shares this machine's page cache); none otherwise."""
    from harness.lab.state import read_state

    state = read_state()
    if state is None:
        return []
    found = (state.export_side(path) for path in files)
    return [path for path in found if path is not None and path.is_file()]


def prepare(
    condition: str, files: list[Path], dataset_root: Path, *, act: bool = True
) -> PageCacheRecord:
    """Put a run's dataset in the page-cache ``condition`` it asks for, and say how it went.

    Cold: flush, evict the files and check with ``mincore`` that they left, evicting again while
    more than ``COLD_RESIDENT_LIMIT`` of the bytes stay (pages another process has mapped or
    locked cannot be dropped); a start that is still warmer than that is reported as
    ``"partly warm"``, never as cold. Warm: read them all once. ``act`` False (every process of
    a machine but one) only measures: one process per machine prepares, the others wait for it.
    """
    import time

    total = sum(path.stat().st_size for path in files)
    started = time.monotonic()
    evictions = 0
    resident: int | None = None
    pages_at_start: int | None = None
    if act and condition == "cold":
        from harness.files import sync_filesystem

        # A lab storage host shares this kernel: its export's files have a page cache of their
        # own, which a cold run empties as a real server's would be (harness.lab).
        served_from = lab_export_files(files)

        while evictions < EVICTIONS:
            # Flush the filesystems first: freshly written data still has metadata in flight,
            # and reading it back would show up as reads the pipeline never made.
            for folder in {path.parent for path in files[:1]} | {dataset_root}:
                sync_filesystem(folder)
            # The file systems were just synced: a second try flushes file by file as well.
            evict(served_from, flush=evictions > 0)
            # evicted and asked in one open per file: a network mount pays a call per open
            found = list(_residency(files, evict_first=True, flush=evictions > 0))
            evictions += 1
            resident = sum(in_file for in_file, _whole, _size in found)
            pages_at_start = sum(whole for _in_file, whole, _size in found)
            if resident <= COLD_RESIDENT_LIMIT * total:
                break
    elif act:
        warm(files)
    if resident is None:
        found = list(_residency(files))
        resident = sum(in_file for in_file, _whole, _size in found)
        pages_at_start = sum(whole for _in_file, whole, _size in found)
    # whole pages, as the kernel reads them: the start of what a cold run brings in
    if condition != "cold":
        pages_at_start = None
    achieved = condition
    if condition == "cold" and total and resident > COLD_RESIDENT_LIMIT * total:
        achieved = "partly warm"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "condition": achieved,
        "requested": condition,
        "evictions": evictions,
        "dataset_files": len(files),
        "dataset_bytes": total,
        "resident_bytes_at_start": resident,
        "resident_fraction_at_start": round(resident / total, 4) if total else None,
        "resident_page_bytes_at_start": pages_at_start,
        "ram_bytes": ram,
        "seconds": round(time.monotonic() - started, 3),
    }
