"""Rows streamed to a run folder as they are taken: segment files, so that memory stays flat.

A :class:`SegmentWriter` buffers the rows appended to it and writes them as one Parquet segment
once the oldest is ``max_age_s`` old or ``max_rows`` are held, then drops them from memory::

    <run folder>/stream/<table>-rank<R>-<NNNNNN>.parquet

Each segment is written under a temporary name (``files.TMP_MARK``) and renamed: a process
killed mid-write leaves a temporary file, never a partial segment under a final name; readers
skip temporaries (:func:`sweep_stale` removes those a dead writer left). At the run's end the
segments are assembled into the run's tables (``harness.run.finish``) and removed; a folder a
SIGKILL left with segments and no summary is read as an incomplete run (``harness.recovery``).

The age is checked when a row is appended: a writer whose source stops appending keeps its last
rows until ``flush`` or ``close`` (the loop appends every step, a collector every tick).
:class:`RowLog` is the list-like face the training loop appends to: with a writer it keeps only
a short tail in memory; without one (a rank that cannot see the run folder, tests) it is a list.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd

from harness.files import TMP_MARK, disk_error

FOLDER = "stream"
CONTEXT = "context.json"  # what a summary needs beyond the rows (``harness.run.finish``)
RAW_SERIES = "raw_"  # a collector's segments: its raw counters, before rates are derived
MAX_AGE_S = 10.0  # a row is on disk at most this long after it was taken (if rows keep coming)
# Tests and benchmarks shorten it (read when a writer is made, so spawned ranks see it too).
MAX_AGE_ENV = "HARNESS_STREAM_MAX_AGE_S"
MAX_ROWS = 50_000  # or once this many are held, whichever comes first
STALE_TMP_S = 60.0  # a temporary older than this belongs to a writer that died
_SEGMENT = re.compile(r"^(?P<table>.+)-rank(?P<rank>\d+)-(?P<number>\d{6})\.parquet$")


def stream_folder(run_folder: Path) -> Path:
    return run_folder / FOLDER


def segment_name(table: str, rank: int, number: int) -> str:
    return f"{table}-rank{rank}-{number:06d}.parquet"


class SegmentWriter:
    """Rows of one table from one rank, flushed as numbered segments (thread-safe)."""

    def __init__(
        self,
        run_folder: Path,
        table: str,
        rank: int,
        *,
        max_age_s: float | None = None,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = stream_folder(run_folder)
        self.table, self.rank = table, rank
        if max_age_s is None:
            max_age_s = float(os.environ.get(MAX_AGE_ENV) or MAX_AGE_S)
        self.max_age_s, self.max_rows, self._clock = max_age_s, max_rows, clock
        self._rows: list[Mapping[str, Any]] = []
        self._oldest = 0.0  # when the first row held now was appended
        self._lock = threading.Lock()
        self.segments: list[Path] = []
        self.rows_written = 0

    def append(self, row: Mapping[str, Any]) -> None:
        self.extend((row,))

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Hold ``rows``; write them (and those held before) when a trigger is due."""
        with self._lock:
            if not self._rows:
                self._oldest = self._clock()
            self._rows.extend(rows)
            if len(self._rows) >= self.max_rows or self._clock() - self._oldest >= self.max_age_s:
                self._flush_locked()

    def flush(self) -> Path | None:
        """Write the rows held now as one segment (None when there are none)."""
        with self._lock:
            return self._flush_locked()

    close = flush

    @property
    def held(self) -> int:
        """Rows in memory, not yet on disk."""
        return len(self._rows)

    def _flush_locked(self) -> Path | None:
        if not self._rows:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._rows)
        path = self.folder / segment_name(self.table, self.rank, len(self.segments) + 1)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
        try:
            self.folder.mkdir(exist_ok=True)
            # our own file object, closed however the write ends: given a path, pyarrow's stream
            # stays open while its exception lives (a full disk kept a descriptor, the mount busy)
            with open(tmp, "wb") as handle:
                pq.write_table(table, handle)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise disk_error(exc, path) from None
        self.segments.append(path)
        self.rows_written += len(self._rows)
        self._rows = []
        return path

    def read_back(self) -> pd.DataFrame:
        """Every row this writer was given, flushed or held, in order."""
        with self._lock:
            held = list(self._rows)
            segments = list(self.segments)
        frames = [_read_segment(path) for path in segments]
        if held:
            frames.append(pd.DataFrame.from_records(held))
        return _concat(frames)


class RowLog:
    """Rows appended as a run goes. With a writer, they go to disk in segments and only the last
    ``keep`` stay in memory (for the live progress line); without one, all stay."""

    def __init__(self, writer: SegmentWriter | None = None, keep: int = 4096) -> None:
        self.writer = writer
        self._keep = keep
        self._tail: list[dict[str, Any]] = []
        self._count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._count += 1
        self._tail.append(row)
        if self.writer is not None:
            self.writer.append(row)
            if len(self._tail) > 2 * self._keep:  # trimmed in bulk: amortised O(1) a row
                del self._tail[: -self._keep]

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.append(row)

    def __len__(self) -> int:
        return self._count

    def tail(self, count: int) -> list[dict[str, Any]]:
        """The last ``count`` rows (at most ``keep`` when streamed)."""
        return self._tail[-count:] if count > 0 else []

    def held(self) -> list[dict[str, Any]]:
        """The rows that are nowhere else: all of them without a writer, none with one (after
        ``close``)."""
        return list(self._tail) if self.writer is None else []

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def frame(self) -> pd.DataFrame:
        """Every row, as a table (read back from the segments when streamed)."""
        if self.writer is None:
            return pd.DataFrame.from_records(self._tail)
        return self.writer.read_back()

    def rows(self) -> list[dict[str, Any]]:
        if self.writer is None:
            return list(self._tail)
        return self.frame().to_dict("records")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.rows()[index]


# --- reading --------------------------------------------------------------------------------------


def segments(run_folder: Path, table: str, rank: int | None = None) -> list[Path]:
    """The finished segments of ``table`` (of one rank, or of all), by rank then number;
    temporaries are never listed."""
    folder = stream_folder(run_folder)
    if not folder.is_dir():
        return []
    found: list[tuple[int, int, Path]] = []
    for path in folder.iterdir():
        match = _SEGMENT.match(path.name)
        if match and match["table"] == table and (rank is None or int(match["rank"]) == rank):
            found.append((int(match["rank"]), int(match["number"]), path))
    return [path for _, _, path in sorted(found)]


def ranks(run_folder: Path, table: str) -> list[int]:
    """The ranks that left segments of ``table``."""
    return sorted({int(m["rank"]) for p in segments(run_folder, table) if (m := _match(p))})


def read_segments(run_folder: Path, table: str, rank: int | None = None) -> pd.DataFrame:
    """Every row of ``table`` in its segments (empty frame when there are none)."""
    return _concat([_read_segment(path) for path in segments(run_folder, table, rank)])


def read_run_table(run_folder: Path, table: str) -> pd.DataFrame:
    """Table ``table`` of every rank as the run's table holds it: its segments' rows with a
    ``rank`` column, rank by rank."""
    frames = [
        read_segments(run_folder, table, rank).assign(rank=rank)
        for rank in ranks(run_folder, table)
    ]
    return _concat(frames)


def column_names(paths: Sequence[Path]) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(paths[0]).names) if paths else []


def sweep_stale(run_folder: Path, older_than_s: float = STALE_TMP_S) -> int:
    """Remove temporaries that a killed writer left in the stream folder (those older than
    ``older_than_s``: a live writer's lasts milliseconds); return how many."""
    folder = stream_folder(run_folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in folder.iterdir():
        if TMP_MARK in path.name:
            try:
                if now - path.stat().st_mtime >= older_than_s:
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # gone meanwhile, or a read-only folder: readers never fail on it
    return removed


def _match(path: Path) -> re.Match[str] | None:
    return _SEGMENT.match(path.name)


def _read_segment(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def as_array(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``frame``'s ``columns`` as float64 rows (shape (rows, len(columns)))."""
    if frame.empty:
        return np.empty((0, len(columns)), dtype=np.float64)
    return frame[list(columns)].to_numpy(dtype=np.float64)
