"""A real short cold run, as a capacity probe makes one (emulated accelerators launched as
processes, cold page cache, 8 measured seconds after the pipeline has filled): the bytes
cross-check agrees, because the samples still prefetched when it stopped are counted as asked
for, and the bytes requested per sample in the window match ``samples.parquet``.

The window arithmetic on synthetic timelines: tests/test_window.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import flat_profile, tiny_collage_scenario

from harness.cli import main
from harness.pipeline.window import fill_batches

pytestmark = pytest.mark.slow


def test_a_short_cold_probe_counts_what_it_prefetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 400 images (79 MB) and 100 ms steps: each sample reads mostly pages nobody asked for yet,
    # so the 48 samples prefetched at the end (2 ranks x 24) weigh on the count.
    workers, prefetch = 2, 2
    document = tiny_collage_scenario(
        tmp_path,
        dataset__generate__images=400,
        dataset__generate__width=256,
        dataset__generate__height=192,
        pipeline__batch_size=4,
        pipeline__crop=48,
        pipeline__workers=workers,
        pipeline__prefetch_factor=prefetch,
        pipeline__page_cache="cold",
    )
    document["training"] = {
        "steps": None,
        "duration_s": 8,
        "warmup_steps": fill_batches(workers, prefetch),  # the steady window, as probes have it
        "model": {"width": 8, "depth": 2},
        "compute": "emulated",
        "profile": str(flat_profile(tmp_path / "flat.json", 0.1)),
        "accelerators": 2,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert main(["datagen", str(path)]) == 0
    results = tmp_path / "results"
    code = main(["run", str(path), "--results", str(results), "--quiet"])
    assert code == 0, capsys.readouterr().err
    (folder,) = results.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and summary["page_cache"]["condition"] == "cold"

    check = summary["cross_checks"][0]
    assert check["never_consumed_first_requested_bytes"] > 0  # prefetched, read, counted
    assert check["verdict"].startswith("agree within 5%"), check
    assert check["ok"] is True

    window = summary["window"]
    assert window["in_flight_known"] and window["after_fill"]
    measured = window["measured"]
    fetched, consumed = measured["fetched"], measured["consumed"]
    start, end = measured["in_flight_at_start"], measured["in_flight_at_end"]
    # fetched - consumed = in flight at the end - in flight at the start, sample for sample
    assert fetched["samples"] - consumed["samples"] == end["samples"] - start["samples"]
    assert fetched["bytes"] - consumed["bytes"] == end["bytes"] - start["bytes"]
    assert window["never_consumed"]["samples"] >= end["samples"]

    metrics = {name: entry["value"] for name, entry in summary["metrics"].items()}
    assert consumed["samples"] == pytest.approx(metrics["samples_per_s"] * measured["seconds"])
    steps = pd.read_parquet(folder / "steps.parquet")
    samples = pd.read_parquet(folder / "samples.parquet")
    taken = samples.merge(steps[~steps["warmup"]][["rank", "step"]], on=["rank", "step"])
    per_sample = metrics["requested_MBps"] * 1e6 / metrics["samples_per_s"]
    assert per_sample == pytest.approx(taken["requested_bytes"].mean(), rel=0.02)
    assert metrics["consumed_MBps"] == pytest.approx(metrics["requested_MBps"], rel=0.02)
    assert not list(Path("/dev/shm").glob(f"harness-fetches-{folder.name}-*"))  # removed
