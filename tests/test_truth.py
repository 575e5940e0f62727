"""The headline numbers are true, not only present: recomputed here from the run's own
``steps.parquet`` (the golden runs, written by the real ``harness run``), independently of
``harness.summary``, they match ``summary.json`` within 0.5 %; and the loop's time adds up:
busy + waiting for data + barrier + other = 100 % of the measured window, none negative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GOLDEN

RUNS = ("collage", "video-cached", "interrupted")
TOLERANCE = 0.005  # relative


def recomputed_headline(steps: pd.DataFrame) -> dict[str, float]:
    """samples/s, busy %, data-wait %, barrier % and other % of the steps after warm-up, worked
    out from the step table alone (each rank over its own span, then the mean of the ranks)."""
    measured = steps[~steps["warmup"].astype(bool)]
    start, end = measured["t_start"].min(), measured["t_end"].max()
    shares: dict[str, list[float]] = {"busy": [], "wait": [], "barrier": [], "other": []}
    for _rank, own in measured.groupby("rank"):
        own = own.sort_values("t_start")
        span = own["t_end"].max() - own["t_start"].min()
        shares["busy"].append(own["compute_s"].sum() / span * 100)
        shares["wait"].append(own["wait_s"].sum() / span * 100)
        shares["barrier"].append(own["barrier_s"].sum() / span * 100)
        # other: inside each step, what is neither compute, wait nor barrier; plus the gaps
        # between steps (bookkeeping of the loop)
        inside = (own["t_end"] - own["t_start"] - own["compute_s"] - own["wait_s"]).sum()
        inside -= own["barrier_s"].sum()
        gaps = (own["t_start"].to_numpy()[1:] - own["t_end"].to_numpy()[:-1]).sum()
        shares["other"].append((inside + gaps) / span * 100)
    return {
        "samples_per_s": measured["samples"].sum() / (end - start),
        **{f"{name}_pct": float(np.mean(values)) for name, values in shares.items()},
    }


def assert_headline_is_true(folder: Path) -> None:
    """``summary.json``'s busy %, data-wait %, barrier % and samples/s against the step table."""
    steps = pd.read_parquet(folder / "steps.parquet")
    metrics = json.loads((folder / "summary.json").read_text())["metrics"]
    truth = recomputed_headline(steps)
    for name, key in (
        ("samples_per_s", "samples_per_s"),
        ("busy_pct", "busy_pct"),
        ("data_wait_pct", "wait_pct"),
        ("barrier_pct", "barrier_pct"),
    ):
        value = metrics[name]["value"]
        assert value == pytest.approx(truth[key], rel=TOLERANCE, abs=1e-9), (name, truth)
    parts = [truth[k] for k in ("busy_pct", "wait_pct", "barrier_pct", "other_pct")]
    assert all(part >= -1e-6 for part in parts), truth
    assert sum(parts) == pytest.approx(100.0, abs=1e-6), truth
    assert 0 < metrics["busy_pct"]["value"] <= 100


@pytest.mark.parametrize("name", RUNS)
def test_headline_numbers_are_the_step_table_recomputed(name: str) -> None:
    folder = GOLDEN / name
    steps = pd.read_parquet(folder / "steps.parquet")
    # Each step's parts fit inside it, and the steps of a rank follow one another: the
    # window's time is compute + wait + barrier + other, with nothing counted twice.
    assert (steps["wait_s"] >= 0).all() and (steps["compute_s"] > 0).all()
    parts = steps["wait_s"] + steps["compute_s"] + steps["barrier_s"]
    assert (parts <= steps["t_end"] - steps["t_start"] + 1e-6).all()
    for _rank, own in steps.groupby("rank"):
        assert (own["t_start"].to_numpy()[1:] >= own["t_end"].to_numpy()[:-1] - 1e-9).all()
    assert_headline_is_true(folder)


def test_the_recomputation_sees_a_wrong_number(tmp_path: Path) -> None:
    """A summary whose busy % is off by 1 % of itself, or steps that overlap, are caught."""
    from conftest import copy_golden

    folder = copy_golden("collage", tmp_path / "run")
    path = folder / "summary.json"
    summary = json.loads(path.read_text())
    summary["metrics"]["busy_pct"]["value"] *= 0.99
    path.write_text(json.dumps(summary))
    with pytest.raises(AssertionError):
        assert_headline_is_true(folder)
    steps = pd.read_parquet(GOLDEN / "collage" / "steps.parquet")
    doubled = steps.assign(compute_s=steps["compute_s"] * 2)  # more compute than wall time
    assert sum(recomputed_headline(doubled)[k] for k in ("busy_pct", "wait_pct")) > 100
