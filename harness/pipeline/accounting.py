"""Byte accounting: the bytes each sample asked the storage for, in all and page by page.

A run compares what its sources asked for with what the kernel reports having read. A page asked
for twice is read from storage once (the page cache keeps it, and the page cache belongs to the
host, not to a process), so besides all the bytes asked for, a ledger of the pages already asked
for counts the first-time bytes separately. A run keeps one ledger per host
(``SharedPageLedger``: a file in shared memory that every rank and DataLoader worker of the host
maps), so that a page two workers ask for counts once, as the kernel reads it once. Sources count
their own reads (``Reads``); a decoder that reads through a file object is handed a
``CountingFile``, which counts for it.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import glob
import io
import json
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.collect.misses import MissCounter

PAGE = mmap.PAGESIZE


def absent_pages(resident: bytes, first_page: int) -> np.ndarray:
    """The page numbers a residency vector (``harness.pagecache.resident_vector``, starting at
    ``first_page``) shows absent from the page cache."""
    return np.flatnonzero(np.frombuffer(resident, dtype=np.uint8) == 0) + first_page


class PageLedger:
    """The pages of each file this process has already asked for (a run shares one ledger
    between the processes of a host: ``SharedPageLedger``; this one serves a lone process).

    A page asked for twice is read from storage once (the page cache keeps it), so the bytes the
    kernel reports are to be compared with the bytes asked for the first time, page by page.
    One byte per 4 KiB page: 24 MB for a 99 GB dataset.
    """

    def __init__(self) -> None:
        self._seen: dict[str, np.ndarray] = {}
        self.missed_bytes = 0  # a lone process's cache misses (a shared ledger: its counter)

    def note(
        self, path: str, pages: np.ndarray, file_size: int, absent: np.ndarray | None = None
    ) -> int:
        """Mark ``pages`` (page numbers) of ``path`` as asked for; return the bytes of those
        that were not asked for before. ``absent``: the pages ``mincore`` found out of the page
        cache just before the read: the read makes the storage send them, so they are counted
        (``missed_bytes``, or the host's counter) as bytes the storage served, first time or
        not (a page evicted and read again is sent again: a dataset larger than RAM)."""
        seen = self._seen.get(path)
        if seen is None:
            seen = self._seen[path] = np.zeros(-(-file_size // PAGE), dtype=bool)
        pages = pages[pages < seen.size]
        fresh = np.unique(pages[~seen[pages]])
        seen[fresh] = True
        self._count_missed(pages, absent, file_size)
        return int(fresh.size) * PAGE

    def _count_missed(self, pages: np.ndarray, absent: np.ndarray | None, file_size: int) -> None:
        """Add the bytes of the pages read that were absent: the file's own bytes (its last
        page only up to its end), what the storage sends, not the page rounding the block
        layer's read_bytes shows. (Two processes reading one absent page at the same instant
        count it twice, where the kernel fetches it once: rare, and said in the README.)"""
        if absent is None or not pages.size:
            return
        missed = np.intersect1d(pages, absent)
        count = missed.size * PAGE
        last, tail = divmod(file_size, PAGE)
        if tail and missed.size and missed[-1] == last:
            count -= PAGE - tail
        if count > 0:
            self._add_missed(int(count))

    def _add_missed(self, count: int) -> None:
        self.missed_bytes += count

    def unseen(self, path: str, start: int, stop: int, file_size: int) -> np.ndarray:
        """The page numbers in [start, stop) of ``path`` not asked for yet (a hint: another
        process may ask for one at any time; ``note`` decides)."""
        seen = self._seen.get(path)
        stop = min(stop, -(-file_size // PAGE))
        if seen is None:
            return np.arange(start, stop)
        return np.flatnonzero(~seen[start:stop]) + start

    def note_range(
        self,
        path: str,
        offset: int,
        length: int,
        file_size: int,
        absent: np.ndarray | None = None,
    ) -> int:
        """``note`` for the pages under ``length`` bytes at ``offset``."""
        if length <= 0:
            return 0
        pages = np.arange(offset // PAGE, (offset + length - 1) // PAGE + 1)
        return self.note(path, pages, file_size, absent)


LEDGER_MAGIC = b"HLEDGER1"
_HEADER = struct.Struct("<8sQQ")  # magic, creator pid, length of the JSON file table


class SharedPageLedger(PageLedger):
    """One ledger of the pages asked for, shared by every process and thread of a host.

    A file in shared memory (``ledger_path``): a header with the dataset's files and sizes, then
    one byte per page of each file, in that order. The run creates it on each host before the
    first sample (``create``); each process maps it on first use and marks pages under an
    exclusive ``flock`` (per open file, so it also keeps threads of one process apart when each
    opened the file: a process forked from one that had it open opens it again). A file the
    table does not list is counted in this process's own ledger.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._open()

    @classmethod
    def create(cls, path: Path, files: Iterable[Path]) -> SharedPageLedger:
        """Create the host's ledger for ``files`` at ``path`` (or join one that another process
        of this host created first, for the same run) and open it."""
        remove_stale_ledgers(path.parent)
        sizes = [(str(file), file.stat().st_size) for file in files]
        table = json.dumps(sizes).encode()
        start = -(-(_HEADER.size + len(table)) // PAGE) * PAGE
        pages = sum(-(-size // PAGE) for _, size in sizes)
        scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(scratch, "wb") as handle:
            handle.write(_HEADER.pack(LEDGER_MAGIC, os.getpid(), len(table)) + table)
            handle.truncate(start + max(pages, 1))  # zeros: no page asked for yet
        try:
            os.link(scratch, path)  # whole or not at all, and never over another's
        except FileExistsError:
            pass
        else:
            MissCounter.create(missed_path(path))
        finally:
            scratch.unlink()
        return cls(path)

    def _open(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self._map = mmap.mmap(self._fd, 0)
        self._misses = MissCounter(missed_path(self.path))
        magic, _creator, length = _HEADER.unpack_from(self._map, 0)
        if magic != LEDGER_MAGIC:
            raise ValueError(f"{self.path}: not a page ledger")
        table = json.loads(self._map[_HEADER.size : _HEADER.size + length])
        start = -(-(_HEADER.size + length) // PAGE) * PAGE
        self._pages = np.frombuffer(self._map, dtype=bool, offset=start)
        self._files: dict[str, tuple[int, int]] = {}
        base = 0
        for name, size in table:
            count = -(-size // PAGE)
            self._files[name] = (base, count)
            base += count

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        PageLedger.__init__(self)
        self.path = state["path"]
        self._open()

    def note(
        self, path: str, pages: np.ndarray, file_size: int, absent: np.ndarray | None = None
    ) -> int:
        if self._pid != os.getpid():  # forked: this process needs its own lock and descriptor
            self._open()
        place = self._files.get(path)
        if place is None:
            with self._lock:
                return super().note(path, pages, file_size, absent)
        base, count = place
        pages = pages[(pages >= 0) & (pages < count)]
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                seen = self._pages[base : base + count]
                fresh = np.unique(pages[~seen[pages]])
                seen[fresh] = True
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._count_missed(pages, absent, file_size)
        return int(fresh.size) * PAGE

    def _add_missed(self, count: int) -> None:
        self._misses.add(count)

    def unseen(self, path: str, start: int, stop: int, file_size: int) -> np.ndarray:
        if self._pid != os.getpid():
            self._open()
        place = self._files.get(path)
        if place is None:
            return super().unseen(path, start, stop, file_size)
        base, count = place
        stop = min(stop, count)
        return np.flatnonzero(~self._pages[base + start : base + stop]) + start


def ledger_path(run_id: str) -> Path:
    """Where the host's ledger of run ``run_id`` lives: shared memory (a tmpfs, never the
    storage under test), else the temporary folder."""
    shm = Path("/dev/shm")
    folder = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return folder / f"harness-ledger-{run_id}"


def missed_path(ledger: Path) -> Path:
    """The host's counter of cache misses beside its ledger (``harness.collect.misses``: the
    io collector finds it by the run's id)."""
    prefix = "harness-ledger-"
    if ledger.name.startswith(prefix):
        return ledger.with_name("harness-misses-" + ledger.name.removeprefix(prefix))
    return ledger.with_name(ledger.name + ".misses")


def remove_ledger(ledger: Path) -> None:
    """The run's ledger and its miss counter, once every process of the host is done."""
    ledger.unlink(missing_ok=True)
    missed_path(ledger).unlink(missing_ok=True)


def remove_stale_ledgers(folder: Path) -> None:
    """Remove the ledgers (and half-made ones) of runs whose creator is gone (killed before it
    could remove them); files that are not ledgers are left alone."""
    for path in folder.glob("harness-ledger-*"):
        try:
            with open(path, "rb") as handle:
                magic, creator, _ = _HEADER.unpack(handle.read(_HEADER.size))
            if magic != LEDGER_MAGIC:
                continue
            os.kill(creator, 0)
        except ProcessLookupError:
            remove_ledger(path)
        except (OSError, struct.error):
            continue
    # A rank killed before it could remove its fetch log (a lost host, SIGKILL) leaves it: a log
    # whose run has no ledger here any more (the ledger outlives the logs of a run) is stale.
    for log in folder.glob("harness-fetches-*-rank*"):
        run_id = log.name.removeprefix("harness-fetches-").rsplit("-rank", 1)[0]
        if not any(folder.glob(f"harness-ledger-{glob.escape(run_id)}*")):
            log.unlink(missing_ok=True)


@dataclass
class Reads:
    """Bytes one sample asked the storage for: all of them, and those asked for the first time."""

    requested: int = 0
    first_time: int = 0

    def add(self, requested: int, first_time: int) -> None:
        self.requested += requested
        self.first_time += first_time


READ_AHEAD_PAGES = 256  # pages after a read checked for read-ahead: 1 MiB, 8x Linux's default
READ_AHEAD_BYTES = READ_AHEAD_PAGES * PAGE  # asked before a read too: which of them it fetches


class CountingFile(io.FileIO):
    """A file whose reads are counted: the bytes the decoder asked the storage for, in all and
    for the first time (through the source's page ledger).

    A decoder reads a container in small sequential pieces, and the kernel reads ahead of them
    (128 KiB and more): pages the decoder may never ask for, but that its reads made the kernel
    fetch. After each read, the pages just past it that are now in the page cache and that nobody
    has asked for yet are counted as first-time bytes of this read (and marked in the ledger),
    so that a cold run's count is what the pipeline caused the kernel to read. (In a warm run
    those pages were there before; the cross-check does not judge warm runs.)"""

    def __init__(self, path: Path, ledger: PageLedger) -> None:
        super().__init__(path, "r")
        self.key, self.size, self.ledger = str(path), os.fstat(self.fileno()).st_size, ledger
        self.reads = Reads()
        self._residency: Any = None  # harness.pagecache.Residency, made on the first read

    def close(self) -> None:
        if self._residency is not None:
            self._residency.close()
            self._residency = None
        super().close()

    def _absent(self, offset: int, length: int) -> np.ndarray | None:
        """The pages of [offset, offset + length) out of the page cache now (before the read);
        None where the file system cannot say."""
        if length <= 0 or offset >= self.size:
            return None
        from harness.pagecache import Residency

        first = offset // PAGE
        try:
            if self._residency is None:
                self._residency = Residency(self.fileno(), self.size)
            vector = self._residency.vector(first, (offset + length - 1) // PAGE + 1 - first)
        except OSError:
            return None
        return absent_pages(vector, first)

    def _count(self, offset: int, count: int, absent: np.ndarray | None) -> None:
        first_time = self.ledger.note_range(self.key, offset, count, self.size, absent)
        if count > 0:
            first_time += self._read_ahead(offset + count, absent)
        self.reads.add(count, first_time)

    def _read_ahead(self, end: int, absent: np.ndarray | None) -> int:
        """First-time bytes of the resident pages right after a read that ended at ``end``,
        from the first page nobody has asked for yet, as far as they are resident. Earlier
        reads' read-ahead is counted already: on sequential reads the check runs only when
        that counted stretch runs short (half the window), once every few reads."""
        from harness.pagecache import Residency

        start = -(-end // PAGE)  # the first page the read did not touch
        unseen = self.ledger.unseen(self.key, start, start + READ_AHEAD_PAGES, self.size)
        if unseen.size == 0 or unseen[0] - start > READ_AHEAD_PAGES // 2:
            return 0
        first = int(unseen[0])
        try:
            if self._residency is None:
                self._residency = Residency(self.fileno(), self.size)
            run = self._residency.run(first, start + READ_AHEAD_PAGES - first)
        except OSError:  # a file system that cannot say: the read-ahead goes uncounted
            return 0
        if run == 0:
            return 0
        # what this read made the kernel fetch: those of them absent before it are misses
        return self.ledger.note(self.key, np.arange(first, first + run), self.size, absent)

    def readinto(self, buffer: Any) -> int | None:
        offset = self.tell()
        absent = self._absent(offset, memoryview(buffer).nbytes + READ_AHEAD_BYTES)
        count = super().readinto(buffer)
        if count:
            self._count(offset, count, absent)
        return count

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        offset = self.tell()
        absent = self._absent(offset, (self.size - offset if size < 0 else size) + READ_AHEAD_BYTES)
        data = super().read(size)
        self._count(offset, len(data), absent)
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


FETCH_RECORD = struct.Struct("<qdd")  # end (monotonic ns), bytes requested, bytes first-time


class FetchLog:
    """Every sample one rank's pipeline fetched, consumed by a step or not.

    Samples travel to the loop inside batches, so those still prefetched (in a worker's queue or
    the background thread's) when the loop stops never reach it, yet their bytes were read. Each
    process that fetches for the rank (its DataLoader workers, or the rank itself) appends one
    record per sample to this file in shared memory (``O_APPEND``: whole records, never
    interleaved): when its read ended and its bytes. The rank reads what has been added as the
    loop goes (``read`` from an offset) and frees what it has read (``release``), so the file
    holds about what is still prefetched, whatever the run's length."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = 0
        self._released = 0  # bytes freed from the start (-1: the file system cannot)

    @classmethod
    def create(cls, path: Path) -> FetchLog:
        """An empty log at ``path`` (a leftover of the same name is replaced)."""
        path.write_bytes(b"")
        return cls(path)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self._fd, self._pid, self._released = Path(state["path"]), None, 0, 0

    def note(self, end_ns: int, requested: float, first_time: float) -> None:
        """One sample fetched: its read ended at ``end_ns`` (``time.monotonic_ns``)."""
        if self._pid != os.getpid():  # forked: this process opens the file itself
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._pid = os.getpid()
        assert self._fd is not None
        os.write(self._fd, FETCH_RECORD.pack(end_ns, requested, first_time))

    def read(self, offset: int = 0) -> tuple[np.ndarray, int]:
        """The records from byte ``offset`` on (whole records only) as a structured array with
        fields ``end_ns``, ``requested`` and ``first_time``, and the offset after them."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        whole = len(data) - len(data) % FETCH_RECORD.size
        dtype = np.dtype([("end_ns", "<i8"), ("requested", "<f8"), ("first_time", "<f8")])
        return np.frombuffer(data[:whole], dtype=dtype), offset + whole

    def release(self, offset: int) -> None:
        """Free the memory of the records before byte ``offset`` (read already): their pages
        are punched out of the file (``fallocate``), whose size and later offsets stay as they
        are, so the processes appending meanwhile are not disturbed. A 24-byte record a sample
        is 100 MB an hour at 1,200 samples/s: kept whole, the log grew a tmpfs (memory) for as
        long as the run ran. Where the file system cannot punch holes the records stay."""
        end = offset - offset % mmap.PAGESIZE  # whole pages only: a partial one is not freed
        if end <= self._released or self._released < 0:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            punched = _punch_hole(fd, end)
        finally:
            os.close(fd)
        self._released = end if punched else -1  # -1: this file system cannot; not tried again

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02  # <linux/falloc.h>


@functools.cache
def _fallocate() -> Any:
    """The C library's ``fallocate`` (Linux), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # not Linux's C library
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    return function


def _punch_hole(fd: int, length: int) -> bool:
    """Deallocate bytes [0, ``length``) of the file open as ``fd`` (``fallocate``: the standard
    library has only ``posix_fallocate``, which allocates). False where unsupported."""
    fallocate = _fallocate()
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    return fallocate is not None and fallocate(fd, mode, 0, length) == 0


def fetch_log_path(run_id: str, rank: int) -> Path:
    """Where rank ``rank`` of run ``run_id`` logs its fetches (beside the page ledger)."""
    return ledger_path(run_id).with_name(f"harness-fetches-{run_id}-rank{rank}")
