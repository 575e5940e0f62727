"""The window rule on synthetic timelines: a fetch's bytes count in the window in which its read
ended, a sample counts as consumed when its step takes it, and what the pipeline held at each
edge is stated; the fetch log that tells the loop of the samples it never took; the summary's
window record, rates and bytes cross-check built on them; the live progress line saying the
same. (A real short cold run: tests/test_window_run.py.)"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.pipeline.accounting import FETCH_RECORD, FetchLog
from harness.pipeline.window import NEVER, Timeline, fill_batches, window_figures
from harness.summary import (
    bytes_cross_check,
    first_requested_bytes,
    loop_metrics,
    window_record,
)
from harness.train.loop import LoopRecords, PendingFetches, TrainingProgress, run_seconds

STEP_COLUMNS = ["step", "t_start", "t_end", "wait_s", "compute_s", "loss", "samples", "warmup"]
SAMPLE_COLUMNS = ["t_end", "latency_ms", "requested_bytes", "first_time_bytes", "step"]
KB = 1000.0


def steady_run(steps: int, depth: int, warmup: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One sample per 1 s step, each taken when its step starts (no wait); the pipeline fetched
    ``depth`` samples at t=0.5 (the fill), then one each time a step took one (it keeps
    ``depth`` ahead): sample i is fetched at 0.5 (i < depth) or at i - depth + 0.5. Every
    sample asks for 10 kB. Returns (steps, samples) tables; samples i >= steps were never
    taken (prefetched when the run stopped)."""
    step_rows = [(i, float(i), i + 1.0, 0.0, 1.0, math.nan, 1, i < warmup) for i in range(steps)]
    frame = pd.DataFrame(step_rows, columns=STEP_COLUMNS).assign(rank=0)
    frame["warmup"] = frame["warmup"].astype(bool)
    fetched = [0.5 if i < depth else i - depth + 0.5 for i in range(steps + depth)]
    samples = pd.DataFrame(
        [(fetched[i], 1.0, 10 * KB, 10 * KB, i) for i in range(steps + depth)],
        columns=SAMPLE_COLUMNS,
    ).assign(rank=0)
    return frame, samples


def split(samples: pd.DataFrame, steps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the samples steps took, those never taken, as the unconsumed table has them)."""
    taken = samples[samples["step"] < steps]
    never = samples[samples["step"] >= steps][["t_end", "requested_bytes", "first_time_bytes"]]
    return taken, never.assign(rank=0)


def test_prefetch_at_both_edges_is_stated_and_rates_agree() -> None:
    # Four samples ahead at every moment; the window is steps 5..19 (t = 5 .. 20).
    # (Windows are half-open, [start, end): the fill's and the measured one meet.)
    steps, samples = steady_run(20, depth=4, warmup=5)
    taken, never = split(samples, 20)
    timeline = Timeline.of(samples["t_end"], [*range(20), *[NEVER] * 4], samples["requested_bytes"])
    figures = window_figures(timeline, 5.0, 20.0)
    assert figures.consumed.samples == 15  # steps 5..19 took one each
    assert figures.in_flight_at_start.samples == 4  # fetched before 5, taken from 5 on
    assert figures.in_flight_at_end.samples == 4  # fetched by 20, never taken
    assert figures.fetched.samples == 15  # samples 5..19 fetched at 1.5 .. 15.5, 20..23 after
    # fetched - consumed = in flight at the end - in flight at the start, exactly
    assert (
        figures.fetched.samples - figures.consumed.samples
        == figures.in_flight_at_end.samples - figures.in_flight_at_start.samples
    )
    assert figures.requested_MBps == pytest.approx(figures.consumed_MBps)
    assert figures.requested_MBps == pytest.approx(15 * 10 * KB / 15.0 / 1e6)

    metrics = loop_metrics(steps, taken, never)
    assert metrics["requested_MBps"]["value"] == pytest.approx(0.01)  # 10 kB/s
    assert metrics["consumed_MBps"]["value"] == pytest.approx(0.01)
    assert metrics["samples_per_s"]["value"] == pytest.approx(1.0)
    assert metrics["fill_s"]["value"] == pytest.approx(5.0)
    # Without the samples never taken (the old count) the window loses the prefetch depth.
    assert loop_metrics(steps, taken)["requested_MBps"]["value"] == pytest.approx(
        (15 - 4) * 10 * KB / 15.0 / 1e6, abs=1e-6
    )


def test_window_record_states_edges_fill_and_samples_never_consumed() -> None:
    steps, samples = steady_run(20, depth=4, warmup=5)
    taken, never = split(samples, 20)
    record = window_record(steps, taken, never, fill_batches(workers=1, prefetch_factor=3))
    assert record is not None
    assert record["fill_batches"] == 4 and record["after_fill"] is True
    assert record["in_flight_known"] is True
    measured = record["measured"]
    assert (measured["start_s"], measured["end_s"], measured["seconds"]) == (5.0, 20.0, 15.0)
    assert measured["in_flight_at_start"] == {"samples": 4, "bytes": 40_000}
    assert measured["in_flight_at_end"] == {"samples": 4, "bytes": 40_000}
    assert measured["fetched"] == measured["consumed"] == {"samples": 15, "bytes": 150_000}
    # the fill apart: five samples fetched at 0.5 (four ahead, one for step 0's), then one a
    # step; steps 0..4 took five of them
    fill = record["fill"]
    assert (fill["start_s"], fill["seconds"]) == (0.0, 5.0)
    assert fill["consumed"]["samples"] == 5 and fill["fetched"]["samples"] == 9
    assert fill["in_flight_at_end"] == measured["in_flight_at_start"]
    assert record["never_consumed"] == {"samples": 4, "bytes": 40_000, "first_time_bytes": 40_000}
    # A backend that does not log its fetches: the end edge is not known, and says so.
    unknown = window_record(steps, taken, None, 4)
    assert unknown is not None and unknown["in_flight_known"] is False
    assert unknown["measured"]["in_flight_at_end"] is None and unknown["never_consumed"] is None


def test_a_run_shorter_than_the_fill() -> None:
    # The pipeline asks for eight samples at once and they arrive 0.25 s apart (to 1.875 s);
    # the run stops after three 1 s steps (one of warm-up), having taken three: the window
    # (1 .. 3 s) sees the pipeline still filling, and five samples were never taken.
    steps = pd.DataFrame(
        [
            (i, float(i), i + 1.0, 0.2 if i == 0 else 0.0, 0.8, math.nan, 1, i == 0)
            for i in range(3)
        ],
        columns=STEP_COLUMNS,
    ).assign(rank=0)
    fetched = [0.125 + 0.25 * i for i in range(8)]
    samples = pd.DataFrame(
        [(fetched[i], 1.0, 10 * KB, 10 * KB, i) for i in range(8)], columns=SAMPLE_COLUMNS
    ).assign(rank=0)
    taken, never = split(samples, 3)
    record = window_record(steps, taken, never, fill_batches(workers=2, prefetch_factor=2))
    assert record is not None and record["fill_batches"] == 5 and record["after_fill"] is False
    measured = record["measured"]
    assert measured["fetched"] == {"samples": 4, "bytes": 40_000}  # at 1.125 .. 1.875
    assert measured["consumed"] == {"samples": 2, "bytes": 20_000}
    assert measured["in_flight_at_start"]["samples"] == 3  # fetched at 0.375 .. 0.875
    assert measured["in_flight_at_end"]["samples"] == 5
    assert measured["requested_MBps"] == pytest.approx(0.02)  # filling: twice what is consumed
    assert measured["consumed_MBps"] == pytest.approx(0.01)
    assert record["fill"]["fetched"]["samples"] == 4 and record["fill"]["consumed"]["samples"] == 1
    assert record["never_consumed"]["samples"] == 5
    # What was asked for, consumed or not: all eight samples' first-time bytes.
    assert first_requested_bytes(taken, never) == 80_000
    assert first_requested_bytes(taken, None) == 30_000
    check = bytes_cross_check(80_000, 80_000, "cold", never_consumed=50_000)
    assert check["ok"] is True and check["never_consumed_first_requested_bytes"] == 50_000
    # the old count: the prefetched samples read but not counted as asked for
    assert bytes_cross_check(80_000, 30_000, "cold")["ok"] is False


def test_a_run_with_no_step_after_warm_up_has_no_window() -> None:
    steps, samples = steady_run(3, depth=2, warmup=3)
    assert window_record(steps, samples, None, 3) is None


def test_bytes_a_backend_cannot_count_stay_not_measured() -> None:
    timeline = Timeline.of([1.0, 2.0], [1.5, 2.5], [math.nan, math.nan])
    figures = window_figures(timeline, 0.0, 3.0)
    assert figures.fetched.samples == 2 and figures.fetched.bytes is None
    assert figures.requested_MBps is None and figures.samples_per_s == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("workers", "prefetch", "expected"), [(0, 2, 1), (1, 2, 3), (2, 2, 5), (4, 3, 13)]
)
def test_fill_batches_is_the_prefetch_depth_and_the_queue(
    workers: int, prefetch: int, expected: int
) -> None:
    assert fill_batches(workers, prefetch) == expected


def test_fetch_log_keeps_records_of_every_process(tmp_path: Path) -> None:
    log = FetchLog.create(tmp_path / "fetches")
    log.note(1_000_000_000, 4096.0, 4096.0)
    child = os.fork()
    if child == 0:  # a DataLoader worker: its own descriptor, same file
        log.note(2_000_000_000, 8192.0, 0.0)
        os._exit(0)
    os.waitpid(child, 0)
    with open(log.path, "ab") as handle:
        handle.write(FETCH_RECORD.pack(3, 1.0, 1.0)[:10])  # a record being written: not read
    records, offset = log.read()
    assert sorted(records["end_ns"].tolist()) == [1_000_000_000, 2_000_000_000]
    assert offset == 2 * FETCH_RECORD.size
    assert len(log.read(offset)[0]) == 0
    log.remove()
    assert len(log.read()[0]) == 0


def _records(t0: float, ends_ns: list[int], log: FetchLog | None = None) -> LoopRecords:
    """Records of one step that took the samples fetched at ``ends_ns`` (matched to ``log``)."""
    records = LoopRecords()
    if log is not None:
        records.fetches = PendingFetches(log, t0)
    ends = run_seconds(np.array(ends_ns, dtype=np.int64), t0)
    for end in ends.tolist():
        records.samples.append(
            {"t_end": end, "latency_ms": 1.0, "requested_bytes": 10.0, "first_time_bytes": 10.0}
            | {"step": 0}
        )
    records.steps.append(
        {"step": 0, "t_start": 2.0, "t_end": 3.0, "wait_s": 0.0, "compute_s": 1.0}
        | {"barrier_s": 0.0, "loss": math.nan, "samples": len(ends_ns), "warmup": False}
    )
    if records.fetches is not None:
        records.fetches.took(ends.tolist())
    return records


def test_samples_the_loop_never_took_are_noted_from_the_log(tmp_path: Path) -> None:
    t0 = 123.456789
    log = FetchLog.create(tmp_path / "fetches")
    ends = [124_000_000_001, 124_500_000_003, 125_000_000_007]
    for end in ends:
        log.note(end, 10.0, 10.0)
    records = _records(t0, ends[:2], log)
    assert records.fetches is not None
    assert records.fetches.unconsumed() == [
        {"t_end": run_seconds(np.array([ends[2]]), t0)[0]}
        | {"requested_bytes": 10.0, "first_time_bytes": 10.0}
    ]
    # A log that misses samples the loop took (a backend that does not log): not known.
    empty = _records(t0, ends, log=FetchLog.create(tmp_path / "other"))
    assert empty.fetches is not None and empty.fetches.unconsumed() is None


def test_pending_fetches_match_as_a_multiset_and_free_the_log_as_they_go(tmp_path: Path) -> None:
    """Two samples may share a moment; a sample taken before its record was read is matched
    when the log is read; what has been read is punched out of the file (its memory freed),
    the later records still read at their offsets."""
    t0 = 0.0  # run seconds = monotonic seconds
    log = FetchLog.create(tmp_path / "fetches")
    pending = PendingFetches(log, t0, every_s=math.inf)  # read only when asked
    moments = [11.0, 12.0, 12.0, 13.0, 14.0]
    for moment in moments:
        log.note(int(moment * 1e9), 1.0, 0.5)
    pending.took([12.0, 14.0])  # taken before the log was read
    pending.update()
    pending.took([11.0, 12.0])  # taken after
    assert pending.waiting(since=0.0).fetched.tolist() == [13.0]
    assert pending.waiting(since=13.5).fetched.tolist() == []
    assert pending.known
    # many records, all taken: the file keeps its size, its pages before the offset read are gone
    many = [20.0 + i / 1000 for i in range(20_000)]  # 480 kB of records
    for moment in many:
        log.note(int(moment * 1e9), 1.0, 1.0)
    blocks = os.stat(log.path).st_blocks
    pending.took(run_seconds(np.array([int(m * 1e9) for m in many]), t0).tolist())
    pending.update()
    assert os.stat(log.path).st_size == (len(moments) + len(many)) * FETCH_RECORD.size
    assert os.stat(log.path).st_blocks < blocks / 10
    log.note(int(99.0 * 1e9), 3.0, 3.0)  # a worker appends after the punch
    assert pending.unconsumed() == [
        {"t_end": 13.0, "requested_bytes": 1.0, "first_time_bytes": 0.5},
        {"t_end": 99.0, "requested_bytes": 3.0, "first_time_bytes": 3.0},
    ]


def test_progress_line_counts_the_fetches_still_prefetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = 100.0
    log = FetchLog.create(tmp_path / "fetches")
    ends = [int((t0 + moment) * 1e9) for moment in (1.5, 2.5, 2.6)]  # 2.5, 2.6: not yet taken
    for end in ends:
        log.note(end, 1e6, 1e6)
    records = _records(t0, ends[:1], log)  # one step, 2 .. 3 s, took the first
    TrainingProgress(None)(records)
    line = capsys.readouterr().err
    assert "1.0 samples/s" in line
    assert "2.0 MB/s requested" in line  # the two fetches that ended in the step's second
