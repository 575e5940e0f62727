"""The side-by-side benchmarks' pure helpers (benchmarks/side_by_side.py): the table, the
ratios and the targets' judgement."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "side_by_side", Path(REPO) / "benchmarks" / "side_by_side.py"
)
assert _spec is not None and _spec.loader is not None
sbs = importlib.util.module_from_spec(_spec)
sys.modules["side_by_side"] = sbs  # dataclasses look their module up
_spec.loader.exec_module(sbs)
NAN = float("nan")


def test_the_table_aligns_columns_and_shows_nan_as_a_dash():
    text = sbs.table(["tool", "AU %"], [["DLIO", 97.44], ["harness", NAN]])
    assert text.splitlines() == ["  tool     AU %", "  DLIO     97.4", "  harness     -"]


def test_ratio_is_nan_where_a_figure_is_missing_or_zero():
    assert sbs.ratio(3.0, 2.0) == 1.5
    for ours, theirs in ((NAN, 1.0), (1.0, NAN), (1.0, 0.0)):
        assert sbs.ratio(ours, theirs) != sbs.ratio(ours, theirs)


def _verdicts(targets):
    return [t.met for t in targets]


def test_mlperf_au_within_two_points_and_samples_at_least_dlios():
    assert _verdicts(sbs.mlperf_targets(97.0, 30.0, 95.5, 29.0, 99.5)) == [True, True]
    assert _verdicts(sbs.mlperf_targets(98.0, 28.0, 95.5, 29.0, 99.5)) == [False, False]
    assert _verdicts(sbs.mlperf_targets(97.0, 30.0, 95.5, 29.0, NAN)) == [True, True]  # no control
    assert _verdicts(sbs.mlperf_targets(NAN, 30.0, 95.5, 29.0, 99.5))[0] is False


def test_mlperf_au_is_not_judged_where_dlios_own_client_is_the_bottleneck():
    au, samples = sbs.mlperf_targets(99.6, 30.0, 97.4, 29.0, 97.0)
    assert au.met is None and "DLIO's client" in au.why and "not judged" in au.line()
    assert samples.met is True and sbs.missed([au, samples]) == 0


def test_cpu_per_sample_is_core_ms():
    assert sbs.cpu_per_sample(50.0, 100.0) == 5.0  # half a core at 100 samples/s
    assert sbs.cpu_per_sample(50.0, 0.0) != sbs.cpu_per_sample(50.0, 0.0)


def test_preprocess_targets_busy_read_and_cpu_share():
    real = {"busy": 80.0, "read_MBps": 100.0, "pipeline_ms_per_sample": 10.0}
    good = {"busy": 82.5, "read_MBps": 104.0, "pipeline_ms_per_sample": 2.0}
    bad = {"busy": 83.5, "read_MBps": 94.0, "pipeline_ms_per_sample": 2.5}
    assert _verdicts(sbs.preprocess_targets(real, good)) == [True, True, True]
    assert _verdicts(sbs.preprocess_targets(real, bad)) == [False, False, False]
    missing = dict(good, read_MBps=NAN)
    assert _verdicts(sbs.preprocess_targets(real, missing))[1] is False


def test_capacity_by_hand_counts_whole_accelerators():
    # 100 kB a sample, batch 16, 0.2 s a step: 8 MB/s each; a 30 MB/s cap feeds 3
    assert sbs.capacity_by_hand(30.0, 100e3, 16, 0.2) == 3
    assert sbs.capacity_by_hand(7.9, 100e3, 16, 0.2) == 0
