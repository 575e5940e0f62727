"""Rows streamed to a run folder as segment files (harness.stream), and a run killed with
SIGKILL read back as an incomplete run (harness.recovery).

The writer's tests use synthetic rows and a fake clock; the last test SIGKILLs a real short run
once it has flushed its first segment, then reads its folder with ``report`` and ``compare``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_harness, tiny_collage_scenario

from harness import stream
from harness.collect.sampler import Collector
from harness.files import TMP_MARK


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rows(start: int, count: int) -> list[dict]:
    return [
        {"step": i, "t_end": i * 0.25, "loss": float(i) / 3, "warmup": i < 2}
        for i in range(start, start + count)
    ]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / stream.FOLDER).iterdir())


def test_rows_are_flushed_once_the_oldest_is_max_age_old(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = stream.SegmentWriter(tmp_path, "steps", 3, max_age_s=10, max_rows=1000, clock=clock)
    for row in _rows(0, 5):
        writer.append(row)
        clock.now += 1.9  # the fifth row arrives 7.6 s after the first: nothing written yet
    assert writer.held == 5 and not (tmp_path / stream.FOLDER).exists()
    clock.now = 10.0  # the first row is now 10 s old: the next append writes all six
    writer.append(_rows(5, 1)[0])
    assert writer.held == 0 and _names(tmp_path) == ["steps-rank3-000001.parquet"]
    writer.append(_rows(6, 1)[0])  # a new age starts with the first row held
    clock.now = 19.9
    writer.append(_rows(7, 1)[0])
    assert writer.held == 2
    clock.now = 20.0
    writer.append(_rows(8, 1)[0])
    assert _names(tmp_path) == ["steps-rank3-000001.parquet", "steps-rank3-000002.parquet"]
    assert writer.rows_written == 9


def test_rows_are_flushed_every_max_rows_and_read_back_equal(tmp_path: Path) -> None:
    writer = stream.SegmentWriter(
        tmp_path, "samples", 0, max_age_s=1e9, max_rows=4, clock=FakeClock()
    )
    rows = _rows(0, 10)
    writer.extend(rows[:3])
    assert writer.held == 3
    for row in rows[3:]:
        writer.append(row)
    assert writer.held == 2 and len(writer.segments) == 2  # 4 + 4 on disk, 2 held
    expected = pd.DataFrame.from_records(rows)
    pd.testing.assert_frame_equal(writer.read_back(), expected)  # segments and rows held
    writer.close()
    assert writer.held == 0 and len(writer.segments) == 3
    assert _names(tmp_path) == [f"samples-rank0-00000{n}.parquet" for n in (1, 2, 3)]
    pd.testing.assert_frame_equal(stream.read_segments(tmp_path, "samples"), expected)
    table = stream.read_run_table(tmp_path, "samples")
    assert (table["rank"] == 0).all() and table["loss"].tolist() == expected["loss"].tolist()


def test_a_half_written_segment_is_never_read_and_is_swept(tmp_path: Path) -> None:
    writer = stream.SegmentWriter(tmp_path, "steps", 0, max_rows=2)
    writer.extend(_rows(0, 2))
    # What a SIGKILL during a write leaves: a temporary with a truncated body.
    tmp = tmp_path / stream.FOLDER / f".steps-rank0-000002.parquet{TMP_MARK}4242"
    tmp.write_bytes(b"PAR1\x00\x01")
    assert stream.segments(tmp_path, "steps") == writer.segments  # the final names only
    assert len(stream.read_segments(tmp_path, "steps")) == 2
    assert stream.sweep_stale(tmp_path) == 0 and tmp.exists()  # a live writer's: kept
    os.utime(tmp, (time.time() - 3600, time.time() - 3600))
    assert stream.sweep_stale(tmp_path) == 1 and not tmp.exists()
    assert not any(TMP_MARK in name for name in _names(tmp_path))


def test_rowlog_keeps_a_tail_and_counts_every_row(tmp_path: Path) -> None:
    log = stream.RowLog(stream.SegmentWriter(tmp_path, "steps", 0, max_rows=10), keep=5)
    rows = _rows(0, 37)
    log.extend(rows)
    assert len(log) == 37 and log.tail(3) == rows[-3:]
    assert len(log._tail) <= 10  # memory: the tail, never the run
    log.close()
    assert log.held() == []  # all on disk
    assert log.frame()["step"].tolist() == list(range(37))
    memory = stream.RowLog()  # without a writer: a list, as before streaming
    memory.extend(rows)
    assert memory.held() == rows and memory[:2] == rows[:2] and list(memory) == rows


class _Counter(Collector):
    name = "fake"

    def __init__(self) -> None:
        super().__init__(rate_hz=1000.0, t0=time.monotonic(), columns=("t", "value"))
        self.ticks = 0

    def _sample(self) -> None:
        self.ticks += 1
        self._record((self._now(), float(self.ticks)))

    def summary(self, start: float, end: float) -> dict[str, dict]:
        return {}


def test_a_streaming_collector_keeps_no_rows_and_reads_its_frame_back(tmp_path: Path) -> None:
    collector = _Counter()
    writer = stream.SegmentWriter(tmp_path, stream.RAW_SERIES + "fake", 0, max_rows=50)
    collector.stream_to(writer)
    collector.start()
    deadline = time.monotonic() + 10
    while len(writer.segments) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    collector.stop()
    assert len(collector._values) == 0 and writer.held == 0  # nothing kept in memory
    frame = collector.frame()
    assert len(frame) == collector.ticks and frame["value"].tolist() == list(
        range(1, collector.ticks + 1)
    )
    assert np.all(np.diff(frame["t"].to_numpy()) > 0)


# --- a real run killed with SIGKILL -------------------------------------------------------------


def _scenario(tmp_path: Path) -> Path:
    document = tiny_collage_scenario(
        tmp_path,
        dataset__generate__width=192,
        dataset__generate__height=128,
        pipeline__crop=48,
        pipeline__workers=1,
        training__steps=None,
        training__duration_s=120,
        training__warmup_steps=1,
        training__model={"width": 8, "depth": 2},
        training__eval_samples=8,
    )
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_run_killed_after_its_first_flush_is_reported_and_compared_as_incomplete(
    tmp_path: Path,
) -> None:
    path = _scenario(tmp_path)
    generated = run_harness("datagen", str(path))
    assert generated.returncode == 0, generated.stderr
    results = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--results", str(results)],
        cwd=REPO,
        env={**os.environ, stream.MAX_AGE_ENV: "0.5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes its workers too
    )
    try:
        deadline = time.monotonic() + 90
        flushed: list[Path] = []
        while not flushed and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            flushed = list(results.glob(f"*/{stream.FOLDER}/steps-rank0-*.parquet"))
            time.sleep(0.05)
        assert flushed, "no segment was flushed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    folder = flushed[0].parent.parent
    assert not (folder / "summary.json").exists() and not (folder / "steps.parquet").exists()
    assert not [
        p
        for p in folder.rglob("*")
        if p.is_file() and TMP_MARK in p.name and p.name.endswith(".parquet")
    ]

    done = run_harness("report", str(folder), "--out", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "report" / "report.html").read_text()
    notes = re.findall(r'<div class="note error"[^>]*>([^<]*)</div>', html)
    assert any(
        "INCOMPLETE: killed: no summary written; measured up to the last flush at t=" in n
        for n in notes
    ), notes
    assert not (folder / "summary.json").exists()  # read, never written

    done = run_harness("compare", str(folder), str(folder), "--json", "-")
    assert done.returncode in (0, 1), done.stderr
    comparison = json.loads(done.stdout)
    text = json.dumps(comparison)
    assert "killed: no summary written" in text, text[:2000]
