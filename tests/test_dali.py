"""The DALI backend on a machine without a GPU: CPU pipelines end to end, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_harness
from test_run import _only_run, _prepare, collage, video

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install .[dev])")


def _run(tmp_path: Path, write_scenario, scenario: dict) -> dict:
    path = write_scenario(scenario)
    _prepare(path)
    done = run_harness("run", str(path), "--results", str(tmp_path / "r"), "--quiet")
    assert done.returncode == 0, done.stderr
    folder = _only_run(tmp_path / "r")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scenario"]["pipeline"]["backend"] == "dali"
    assert len(pd.read_parquet(folder / "steps.parquet")) == scenario["training"]["steps"]
    return summary


@pytest.mark.parametrize(
    ("kind", "image_format"),
    [("collage", "npy"), ("collage", "jpeg"), ("cached", "npy"), ("cached", "jpeg")],
)
def test_dali_cpu_pipeline_trains(
    tmp_path: Path, write_scenario, kind: str, image_format: str
) -> None:
    if kind == "collage":
        scenario = collage(tmp_path, dataset__generate__format=image_format)
    else:
        # Tiny 128x96 frames with few objects learn slower: more steps, a smaller margin (the
        # torch backend reaches the same mIoU on them).
        scenario = video(tmp_path, "cached", pipeline__cache__format=image_format)
        scenario["training"]["steps"] = 30
    scenario["pipeline"]["backend"] = "dali"
    summary = _run(tmp_path, write_scenario, scenario)
    metrics = summary["metrics"]
    assert metrics["loss_last"]["value"] < metrics["loss_first"]["value"]
    margin = 0.05 if kind == "collage" else 0.02
    assert metrics["miou"]["value"] > metrics["miou_chance"]["value"] + margin
    # DALI does not time single samples: said so, never a made-up number.
    assert metrics["fetch_latency_p50_ms"]["value"] is None
    assert summary["cross_checks"][0]["verdict"] == "not available"


def test_dali_refuses_decoded_video_without_a_gpu(tmp_path: Path, write_scenario) -> None:
    scenario = video(tmp_path, "decoded")
    scenario["pipeline"]["backend"] = "dali"
    path = write_scenario(scenario)
    _prepare(path)
    done = run_harness("run", str(path), "--results", str(tmp_path / "r"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: backend dali not available for video decoded: DALI decodes H.264/HEVC video on "
        "the GPU only and this machine has none; use pipeline.backend torch"
    )
    assert not (tmp_path / "r").exists()
