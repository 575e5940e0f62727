"""The window rule for every rate: which samples and bytes fall in an interval of the run.

A sample has two moments: its fetch ended (its bytes were read: ``fetched``) and a step took it
(``taken``; never, for a sample still prefetched when the run stopped). In a window [start, end)
a fetch's bytes count when its read ended inside it (requested bytes), and a sample counts as
consumed when its step took it inside it (samples/s, consumed bytes); half-open, so that
windows that meet (the fill, then the measured steps) count every sample once. The two differ
by what the pipeline held at the edges: samples fetched and not yet taken at the start and at
the end (``in_flight``): fetched - consumed = in flight at the end - in flight at the start.
A short window whose pipeline holds as much at both edges sees the same rate both ways; one that
starts while the pipeline is still filling does not, hence the steady window (``fill_batches``).

Pure arithmetic on arrays, shared by the live progress line (``harness.train.loop``) and the
summary (``harness.summary``), so that both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.pipeline.prefetch import QUEUE_DEPTH

NEVER = float("inf")  # ``taken`` of a sample no step took


def fill_batches(workers: int, prefetch_factor: int) -> int:
    """Batches a rank's pipeline holds ahead of the loop once full: ``prefetch_factor`` per
    DataLoader worker (none without workers) and the background thread's queue. The steady
    window starts once that many have been consumed (or after the warm-up, if later): before,
    the steps take batches fetched while the pipeline filled."""
    return (workers * prefetch_factor if workers > 0 else 0) + QUEUE_DEPTH


@dataclass(frozen=True)
class Timeline:
    """Samples of a run (or of a part of it), one entry each, in seconds of the run's clock."""

    fetched: np.ndarray  # when its read ended
    taken: np.ndarray  # when a step took it; NEVER: still prefetched when the run stopped
    requested: np.ndarray  # bytes asked for; NaN: the backend cannot count them

    @classmethod
    def of(cls, fetched: Any, taken: Any, requested: Any) -> Timeline:
        arrays = (np.asarray(a, dtype=np.float64).ravel() for a in (fetched, taken, requested))
        return cls(*arrays)

    def __add__(self, other: Timeline) -> Timeline:
        return Timeline(
            np.concatenate([self.fetched, other.fetched]),
            np.concatenate([self.taken, other.taken]),
            np.concatenate([self.requested, other.requested]),
        )


@dataclass(frozen=True)
class Count:
    """Samples and their bytes (None: not counted by the backend)."""

    samples: int
    bytes: float | None

    @classmethod
    def of(cls, requested: np.ndarray) -> Count:
        if requested.size and np.isnan(requested).all():
            return cls(int(requested.size), None)
        return cls(int(requested.size), float(np.nansum(requested)))

    def record(self) -> dict[str, Any]:
        return {"samples": self.samples, "bytes": None if self.bytes is None else int(self.bytes)}


@dataclass(frozen=True)
class WindowFigures:
    """What happened in [start, end): fetched (read ended in it), consumed (taken in it) and
    what was fetched but not yet taken at each edge."""

    start: float
    end: float
    fetched: Count
    consumed: Count
    in_flight_at_start: Count
    in_flight_at_end: Count

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def _rate(self, value: float | None) -> float | None:
        return None if value is None or self.seconds <= 0 else value / self.seconds

    @property
    def samples_per_s(self) -> float | None:
        return self._rate(self.consumed.samples)

    @property
    def requested_MBps(self) -> float | None:
        rate = self._rate(self.fetched.bytes)
        return None if rate is None else rate / 1e6

    @property
    def consumed_MBps(self) -> float | None:
        rate = self._rate(self.consumed.bytes)
        return None if rate is None else rate / 1e6

    def record(self) -> dict[str, Any]:
        """As ``summary.json`` keeps it."""
        rates = {
            "samples_per_s": self.samples_per_s,
            "requested_MBps": self.requested_MBps,
            "consumed_MBps": self.consumed_MBps,
        }
        return {
            "start_s": round(self.start, 6),
            "end_s": round(self.end, 6),
            "seconds": round(self.seconds, 6),
            "fetched": self.fetched.record(),
            "consumed": self.consumed.record(),
            "in_flight_at_start": self.in_flight_at_start.record(),
            "in_flight_at_end": self.in_flight_at_end.record(),
            **{name: None if v is None else round(v, 6) for name, v in rates.items()},
        }


def window_figures(timeline: Timeline, start: float, end: float) -> WindowFigures:
    """The window [start, end) of ``timeline`` by the rule above."""
    fetched, taken, requested = timeline.fetched, timeline.taken, timeline.requested
    return WindowFigures(
        start=start,
        end=end,
        fetched=Count.of(requested[(fetched >= start) & (fetched < end)]),
        consumed=Count.of(requested[(taken >= start) & (taken < end)]),
        in_flight_at_start=Count.of(requested[(fetched < start) & (taken >= start)]),
        in_flight_at_end=Count.of(requested[(fetched < end) & (taken >= end)]),
    )
