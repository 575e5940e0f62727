"""The DALI backend on a machine without a GPU: CPU pipelines end to end, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_harness
from test_run import _only_run, _prepare, collage, video

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess

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


@pytest.mark.no_gpu
def test_dali_refuses_h264_video_without_a_gpu(tmp_path: Path, write_scenario) -> None:
    scenario = video(tmp_path, "decoded")
    scenario["pipeline"]["backend"] = "dali"
    path = write_scenario(scenario)
    _prepare(path)
    done = run_harness("run", str(path), "--results", str(tmp_path / "r"))
    assert done.returncode == 2
    first = tmp_path / "videos/videos/cam000.mkv"
    assert done.stderr.strip() == (
        f"error: {first}: backend dali decodes h264 video on the GPU only and this machine has "
        "none (its CPU decoder takes vp8, vp9, mjpeg); use pipeline.backend torch"
    )
    assert not (tmp_path / "r").exists()


def _vp9(tmp_path: Path, **changes) -> dict:
    scenario = video(tmp_path, "decoded", dataset__generate__codec="vp9", **changes)
    scenario["pipeline"]["backend"] = "dali"
    return scenario


def test_dali_video_reader_frames_and_masks_line_up(tmp_path: Path, write_scenario) -> None:
    """Each sample's frame number (from DALI) names the frame whose pixels it carries, and its
    mask is that frame's: DALI's frames against PyAV's, masks against the track tables."""
    from harness.data.tracks import Tracks
    from harness.data.video_reader import VideoReader
    from harness.pipeline.dali_backend import build_dali_video_batches
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import DecodedVideoSource

    crop = 96  # whole-height crops: moving objects are in view
    path = write_scenario(_vp9(tmp_path, pipeline__crop=crop, pipeline__sequence_length=4))
    _prepare(path)
    root = tmp_path / "videos"
    source = DecodedVideoSource(root, json.loads((root / "dataset.json").read_text()), 1)
    plan = SamplePlan(source.files, crop, 0, True, sequence_length=4)
    batches = build_dali_video_batches(
        source, plan, batch_size=8, crop=crop, workers=1, seed=0, rank=0, world=1, steps=3,
        device_index=None, work_dir=tmp_path,
    )  # fmt: skip
    checked = 0
    for batch in batches:
        assert batch.image.shape == (8, 3, crop, crop) and batch.mask.shape == (8, crop, crop)
        refs = batch.refs
        assert [r.frame - refs[0].frame for r in refs[:4]] == [0, 1, 2, 3]  # one sequence
        for image, mask, ref in zip(batch.image, batch.mask, refs, strict=True):
            held_out = source.files[ref.file].frames - source.files[ref.file].frames // 8
            assert ref.frame < held_out  # training frames only
            rows = slice(ref.top, ref.top + crop)
            cols = slice(ref.left, ref.left + crop)
            record = source.records[ref.file]
            tracks = Tracks.load(root / record["tracks"])
            assert (mask.numpy() == tracks.mask(ref.frame)[rows, cols]).all()
            pixels = image.permute(1, 2, 0).numpy().astype(int)
            with VideoReader(root / record["path"], 1) as reader:
                same = abs(pixels - reader.read(ref.frame)[rows, cols]).mean()
                other = min(
                    abs(pixels - reader.read(f)[rows, cols]).mean()
                    for f in (max(0, ref.frame - 6), min(held_out - 1, ref.frame + 6))
                    if f != ref.frame
                )
            assert same < 4 and same < other, (ref, same, other)
            checked += 1
    assert checked == 24


def test_dali_decodes_vp9_video_on_cpu_and_trains(tmp_path: Path, write_scenario) -> None:
    scenario = _vp9(tmp_path, pipeline__sequence_length=2)
    scenario["training"]["steps"] = 20
    summary = _run(tmp_path, write_scenario, scenario)
    metrics = summary["metrics"]
    assert metrics["loss_last"]["value"] < metrics["loss_first"]["value"]
    assert metrics["fetch_latency_p50_ms"]["value"] is None
