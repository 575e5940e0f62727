"""The shared fixed-rate sampler: one daemon thread per collector, rows kept as packed floats.

A collector reads real counters on a fixed schedule (tick ``k`` is due at ``start + k / rate_hz``;
a tick missed because a sample ran long is skipped, never run late, so the phase does not drift)
and appends one or more rows of numbers. Rows are stored in an ``array("d")`` rather than as
Python objects: an hour at 10 Hz on a many-core machine would otherwise cost hundreds of MB.
Rates and percentages that need two samples are derived when the frame is built, outside the
sampling thread, which keeps the thread's own CPU time (``cpu_seconds``) small.
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from harness.stream import SegmentWriter

# stop() waits this long for the thread; a sample stuck in a driver call must not hang the run.
JOIN_TIMEOUT_S = 5.0


class Collector:
    """Base class: subclasses set ``name`` and ``columns`` and implement ``_sample``.

    ``unavailable`` is decided at construction: None when the source works, else a short reason.
    An unavailable collector's ``start``/``stop`` do nothing and its frame is empty. A failure while
    sampling ends that collector's series and is kept in ``error`` (one line) for the run engine to
    report; it is never raised into the training process.
    """

    name: str = "collector"

    def __init__(self, *, rate_hz: float, t0: float, columns: Sequence[str]) -> None:
        try:
            rate = float(rate_hz)
        except (TypeError, ValueError):
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"collector rate_hz must be a positive number, got {rate_hz!r}")
        self.rate_hz = rate
        self.period = 1.0 / self.rate_hz
        self.t0 = t0
        self.columns: tuple[str, ...] = tuple(columns)
        self.unavailable: str | None = None
        self.error: str | None = None
        self.cpu_seconds = 0.0
        self.missed_ticks = 0
        self._values = array("d")
        self._lock = threading.Lock()
        # with one, the rows go to the run folder as the run goes (see stream_to)
        self._writer: SegmentWriter | None = None
        # held until stop(): the thread waits for the next tick by trying to acquire it, which
        # costs a third less CPU per wake-up than Event.wait (no Condition, no new lock per wait)
        self._halt = threading.Lock()
        self._halt.acquire()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    def stream_to(self, writer: SegmentWriter) -> None:
        """Send the raw rows to ``writer`` (segment files in the run folder) instead of keeping
        them in memory, so that memory stays flat however long the run; ``frame`` reads them
        back. Call before ``start``."""
        self._writer = writer

    def start(self) -> None:
        """Start the sampling thread; the first sample is taken at once. Later calls: no-op."""
        if self.unavailable is not None or self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(target=self._run, name=f"collect-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take a final sample, end the thread and wait for it. Safe to call more than once."""
        thread = self._thread
        if thread is None:
            if not self._closed and self.unavailable is None:
                self._close_quietly()
            return
        if not self._stopping:
            self._stopping = True
            self._halt.release()
        thread.join(JOIN_TIMEOUT_S)
        if thread.is_alive() and self.error is None:
            self.error = f"sampler did not stop within {JOIN_TIMEOUT_S:g} s (a read is blocked)"
        if self._writer is not None:
            try:
                self._writer.flush()  # the final rows: the series on disk is whole
            except Exception as err:  # a full disk: said in the summary, never raised here
                self.error = self.error or f"{self.name} series not written: {err}"

    def _run(self) -> None:
        began = time.thread_time()
        try:
            next_tick = time.monotonic()
            while True:
                self._sample()
                self.cpu_seconds = time.thread_time() - began
                next_tick += self.period
                now = time.monotonic()
                if now >= next_tick:  # the sample overran one or more ticks: skip them
                    missed = math.floor((now - next_tick) / self.period) + 1
                    self.missed_ticks += missed
                    next_tick += missed * self.period
                if self._halt.acquire(timeout=next_tick - now):
                    break
            self._sample()  # the final sample, so the series covers the end of the run
        except Exception as err:  # a bug or a vanished source: keep the series so far
            self.error = f"{self.name} collector stopped: {type(err).__name__}: {err}"
        finally:
            self._close_quietly()
            self.cpu_seconds = time.thread_time() - began

    def _close_quietly(self) -> None:
        self._closed = True
        try:
            self._close()
        except Exception as err:
            self.error = self.error or f"{self.name} collector close: {type(err).__name__}: {err}"

    # ------------------------------------------------------------- for subclasses
    def _sample(self) -> None:
        """Read the source once and ``_record`` one or more rows."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release what the source holds (runs in the sampling thread, or in stop())."""

    def _now(self) -> float:
        """Timestamp of a sample on the run's time base (seconds since ``t0``)."""
        return time.monotonic() - self.t0

    def _record(self, row: Sequence[float]) -> None:
        if self._writer is not None:
            self._writer.append(dict(zip(self.columns, map(float, row), strict=True)))
            return
        with self._lock:
            self._values.extend(row)

    def _raw(self) -> np.ndarray:
        """A copy of every row recorded so far, shape (rows, len(columns))."""
        if self._writer is not None:
            from harness.stream import as_array

            return as_array(self._writer.read_back(), self.columns)
        with self._lock:
            data = self._values.tobytes()
        return np.frombuffer(data, dtype=np.float64).reshape(-1, len(self.columns)).copy()

    def _build_frame(self, raw: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(raw, columns=list(self.columns))

    # ------------------------------------------------------------------ results
    def frame(self) -> pd.DataFrame:
        """The time series recorded so far (column ``t`` plus numeric columns named with units)."""
        if self.unavailable is not None:
            return pd.DataFrame({"t": pd.Series([], dtype=np.float64)})
        return self._build_frame(self._raw())

    def summary(self, start: float, end: float) -> dict[str, dict]:
        """Metrics over the measured window [start, end] (seconds on the same base as ``t``)."""
        raise NotImplementedError


def per_sample_rate(t: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Per-sample rate from the previous sample (NaN for the first)."""
    rate = np.full(t.shape, np.nan)
    if t.size > 1:
        elapsed = np.diff(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate[1:] = np.where(elapsed > 0, np.diff(counter) / elapsed, np.nan)
    return rate


def window_delta(t: np.ndarray, counter: np.ndarray, start: float, end: float) -> float | None:
    """Counter growth between the first and last samples inside [start, end] (the same samples
    that stats.counter_rate uses, so delta / elapsed equals the rate)."""
    inside = np.flatnonzero((t >= start) & (t <= end))
    if inside.size < 2 or not np.isfinite(counter[inside[[0, -1]]]).all():
        return None
    return float(counter[inside[-1]] - counter[inside[0]])


class ProcFile:
    """A system-wide /proc file (/proc/stat, /proc/diskstats) kept open and re-read from offset 0.

    Re-reading an open seq_file with pread regenerates it, saving an open and a close per tick.
    Only files that never go away are kept open: per-process files are opened each time, so that
    a long tree of short-lived workers never holds file descriptors the training may need.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> bytes:
        chunk = 1 << 16
        data = os.pread(self._fd, chunk, 0)
        if len(data) < chunk:
            return data
        parts = [data]
        while len(data) == chunk:
            data = os.pread(self._fd, chunk, chunk * len(parts))
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_small(path: str) -> bytes | None:
    """One read of a small /proc file; None when the process behind it has gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:  # ESRCH: the process exited between open and read
        return None
    finally:
        os.close(fd)
