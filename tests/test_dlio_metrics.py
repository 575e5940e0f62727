"""The summary's DLIO block (``harness.dlio_metrics``) on synthetic timelines: DLIO 2.0.0's AU
(nominal compute of every step but the first over the wall less the first step's load and
compute), its samples/s (every step, the first kept; summed over ranks), its "MB/s" (MiB/s of the
record length); the block in summary.json and in the DLIO export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import GOLDEN, copy_golden

from harness import results
from harness.dlio_metrics import dlio_block, run_dlio_block
from harness.results.summary_file import read_summary

BATCH = 2


def _timeline(
    rank: int = 0, nominal: float | None = None, warmup: int = 1, compute: float = 0.2
) -> list[dict]:
    """Four steps back to back: a slow first one (1 s wait, the pipeline filling), then three of
    0.05 s wait, ``compute`` s compute and 0.05 s barrier; ``nominal`` the compute time each
    drew."""
    waits, t, rows = [1.0, 0.05, 0.05, 0.05], 0.0, []
    for step, wait in enumerate(waits):
        barrier = 0.0 if step == 0 else 0.05
        row = {
            "step": step,
            "t_start": t,
            "t_end": t + wait + compute + barrier,
            "wait_s": wait,
            "compute_s": compute,
            "barrier_s": barrier,
            "samples": BATCH,
            "warmup": step < warmup,
            "rank": rank,
        }
        if nominal is not None:
            row["compute_nominal_s"] = nominal
        rows.append(row)
        t = row["t_end"]
    return rows


def _samples(steps: list[dict], size: float = 1000.0) -> pd.DataFrame:
    rows = [
        {"rank": s["rank"], "step": s["step"], "requested_bytes": size}
        for s in steps
        for _ in range(BATCH)
    ]
    return pd.DataFrame(rows)


# wall 2.1 s (1.2 + 3 x 0.3); step 1's load and compute (1.2 s) left out of AU: 0.9 s
WALL, AU_WALL = 2.1, 0.9


def test_au_leaves_the_first_step_out_and_throughput_keeps_it() -> None:
    rows = _timeline()
    block = dlio_block(pd.DataFrame(rows), _samples(rows))
    assert block is not None and block.au_source == "measured"
    assert block.au_pct == pytest.approx(100 * 3 * 0.2 / AU_WALL)  # 66.7, not 4 x 0.2 / 2.1
    assert block.train_throughput_samples_per_second == pytest.approx(4 * BATCH / WALL)
    assert block.record_length == 1000.0
    assert block.train_io_MB_per_second == pytest.approx(4 * BATCH / WALL * 1000 / 2**20)
    assert block.steps == 4 and block.metric_exclude_start_steps == 1
    assert block.definition == "dlio_benchmark 2.0.0"


def test_the_warm_up_steps_count_as_dlio_counts_them() -> None:
    """The harness's warm-up steps change nothing: DLIO has none, only step 1 is left out."""
    plain, long_warmup = _timeline(warmup=1), _timeline(warmup=3)
    one = dlio_block(pd.DataFrame(plain), _samples(plain))
    three = dlio_block(pd.DataFrame(long_warmup), _samples(long_warmup))
    assert one == three


def test_nominal_compute_times_where_every_step_drew_one() -> None:
    rows = _timeline(nominal=0.19)
    block = dlio_block(pd.DataFrame(rows), _samples(rows))
    assert block is not None and block.au_source == "nominal"
    assert block.au_pct == pytest.approx(100 * 3 * 0.19 / AU_WALL)
    rows[2]["compute_nominal_s"] = float("nan")  # one step without: the measured times, all
    block = dlio_block(pd.DataFrame(rows), _samples(rows))
    assert block is not None and block.au_source == "measured"
    assert block.au_pct == pytest.approx(100 * 3 * 0.2 / AU_WALL)


def test_ranks_au_is_their_mean_and_throughput_their_sum() -> None:
    first = _timeline(rank=0)
    second = _timeline(rank=1, compute=0.1)  # rank 1 computes half as long
    rows = first + second
    block = dlio_block(pd.DataFrame(rows), _samples(rows))
    assert block is not None and block.num_accelerators == 2
    wall_1 = 2.1 - 4 * 0.1
    au_1 = 100 * 3 * 0.1 / (wall_1 - 1.1)
    assert block.au_pct == pytest.approx((100 * 0.6 / AU_WALL + au_1) / 2)
    expected = 4 * BATCH / WALL + 4 * BATCH / wall_1
    assert block.train_throughput_samples_per_second == pytest.approx(expected)


def test_not_measured_is_none_never_zero() -> None:
    assert dlio_block(pd.DataFrame(), pd.DataFrame()) is None
    one = _timeline()[:1]  # one step: nothing left for AU
    block = dlio_block(pd.DataFrame(one), _samples(one))
    assert block is not None and block.au_pct is None
    assert block.train_throughput_samples_per_second == pytest.approx(BATCH / 1.2)
    rows = _timeline()
    unknown = _samples(rows, size=float("nan"))  # a backend that does not count bytes
    block = dlio_block(pd.DataFrame(rows), unknown)
    assert block is not None and block.record_length is None
    assert block.train_io_MB_per_second is None and block.au_pct is not None


def test_a_golden_summary_without_the_block_still_reads(tmp_path: Path) -> None:
    """Runs written before the block read as before; their block comes from their tables by the
    same computation; a block written reads back typed."""
    summary = read_summary(GOLDEN / "collage" / "summary.json")
    assert summary.dlio is None or summary.dlio.definition == "dlio_benchmark 2.0.0"
    run = results.RunFolder.read(GOLDEN / "collage")
    steps, samples = run.table("steps"), run.table("samples")
    assert steps is not None and samples is not None
    assert run_dlio_block(run) == dlio_block(steps, samples)
    copy = copy_golden("collage", tmp_path / "run")
    document = json.loads((copy / "summary.json").read_text())
    block = dlio_block(steps, samples)
    assert block is not None
    document["dlio"] = block.model_dump(mode="json") | {"au_pct": 12.5}
    (copy / "summary.json").write_text(json.dumps(document))
    again = results.RunFolder.read(copy)
    assert again.summary is not None and again.summary.dlio is not None
    assert run_dlio_block(again) == again.summary.dlio and again.summary.dlio.au_pct == 12.5


def test_dlio_export_takes_every_figure_from_the_block(cli, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    blocks = []
    for index, au in enumerate((96.0, 80.0), start=1):
        run = copy_golden("collage", runs / f"r{index}")
        summary = json.loads((run / "summary.json").read_text())
        summary["run_id"] += f"-r{index}"
        block = run_dlio_block(results.RunFolder.read(run))
        assert block is not None
        summary["dlio"] = block.model_dump(mode="json") | {
            "au_pct": au,
            "train_throughput_samples_per_second": 10.0 * index,
            "train_io_MB_per_second": 1.5 * index,
        }
        blocks.append(summary["dlio"])
        (run / "summary.json").write_text(json.dumps(summary))
    done = cli("export", runs, "--to", "dlio")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    metric = document["metric"]
    assert set(metric) == {
        "train_au_percentage",
        "train_au_mean_percentage",
        "train_au_meet_expectation",
        "train_au_stdev_percentage",
        "train_throughput_samples_per_second",
        "train_throughput_mean_samples_per_second",
        "train_throughput_stdev_samples_per_second",
        "train_io_mean_MB_per_second",
        "train_io_stdev_MB_per_second",
    }
    assert metric["train_au_percentage"] == [96.0, 80.0]
    assert metric["train_throughput_samples_per_second"] == [10.0, 20.0]
    assert metric["train_throughput_mean_samples_per_second"] == 15.0
    assert metric["train_io_mean_MB_per_second"] == pytest.approx(2.25)
    assert metric["train_io_stdev_MB_per_second"] == pytest.approx(0.75)
    assert {"start", "end", "num_accelerators", "num_hosts", "hostname", "epochs"} <= set(document)
    harness_block = document["harness"]
    assert harness_block["definition"] == "dlio_benchmark 2.0.0"
    assert harness_block["au_source"] == [b["au_source"] for b in blocks]
    assert harness_block["record_length"] == [b["record_length"] for b in blocks]
