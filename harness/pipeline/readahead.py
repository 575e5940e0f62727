"""Whole files read by I/O threads ahead of the samples that need them (``pipeline.read_threads``).

A DataLoader worker reads its batch's files one after the other, and while it decodes and crops
one sample the storage has nothing to do for it: a worker keeps one synchronous read in flight,
like one ``fio --ioengine=psync`` job. A training client with many cores runs many workers; a
small client (a CI runner, a storage engineer's test node) cannot, and then the harness, not
the storage, limits the reads it measures. Threads stand in for the missing workers: each reads
a whole file synchronously (the same requests a worker would make; the GIL is free during the
read), and the worker takes the bytes when it gets to the sample. The bytes are counted where
the sample takes them, as if the worker had read them itself.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from harness.pagecache import resident_vector


def read_file(path: Path) -> tuple[bytes, int, bytes | None]:
    """(the file's bytes, time.monotonic_ns() when the read began, which of its pages were in the
    page cache just before the read: ``harness.pagecache.resident_vector``, None where the file
    system cannot say), unbuffered."""
    began = time.monotonic_ns()
    with open(path, "rb", buffering=0) as handle:
        try:
            resident = resident_vector(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError:
            resident = None
        return handle.readall(), began, resident


class ReadAhead:
    """Reads submitted files in ``threads`` threads of this process; ``take`` hands them over.

    Made lazily in each process that reads (a DataLoader worker after its fork): threads do not
    survive a fork."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[Path, Future[tuple[bytes, int, bytes | None]]] = {}
        self.earliest_taken: int | None = None  # when the first read of what was taken began

    def submit(self, paths: list[Path]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="read-ahead")
        for path in paths:
            if path not in self._pending:
                self._pending[path] = self._pool.submit(read_file, path)

    def take(self, path: Path) -> tuple[bytes, int, bytes | None] | None:
        """The file's bytes and read start, if it was submitted (its read error, if it failed);
        None if it was not."""
        future = self._pending.pop(path, None)
        if future is None:
            return None
        data, began, resident = future.result()
        if self.earliest_taken is None or began < self.earliest_taken:
            self.earliest_taken = began
        return data, began, resident

    def forget(self) -> None:
        """Drop what was read ahead and not taken (a batch that ended early)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
