"""What of the GPU data paths runs without a GPU: frame selection for sequences, the nvdec
backend's refusals (no GPU, a codec or size NVDEC cannot take), and the self-check's CPU plan.
The GPU paths themselves are checked by ``harness selfcheck --gpu`` (docs/gpu-results.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, run_harness
from test_run import _prepare, collage, video

from harness.errors import HarnessError
from harness.pipeline.codecs import NVDEC_LIMITS
from harness.pipeline.nvdec_backend import check_scenario
from harness.pipeline.plan import FileInfo, SamplePlan
from harness.pipeline.sources import DecodedVideoSource
from harness.results.document import FORMAT_VERSION


def test_sequences_are_consecutive_frames_inside_the_training_range() -> None:
    files = [FileInfo(640, 360, 100), FileInfo(640, 360, 9)]  # a video shorter than a run
    plan = SamplePlan(files, 128, seed=5, shuffle=True, sequence_length=4)
    train_frames = [100 - 100 // 8, 9 - 1]
    for run in range(200):
        refs = [plan.train(run * 4 + offset) for offset in range(4)]
        assert len({ref.file for ref in refs}) == 1
        frames = [ref.frame for ref in refs]
        last = train_frames[refs[0].file] - 1
        assert all(0 <= frame <= last for frame in frames)
        if last >= 3:  # room for the whole run: consecutive
            assert frames == list(range(frames[0], frames[0] + 4))
        assert len({(ref.top, ref.left) for ref in refs}) > 1  # each sample its own crop
    # deterministic, and one random position per run
    again = SamplePlan(files, 128, seed=5, shuffle=True, sequence_length=4)
    assert [again.train(n) for n in range(40)] == [plan.train(n) for n in range(40)]
    starts = {plan.train(run * 4).frame for run in range(200) if plan.train(run * 4).file == 0}
    assert len(starts) > 30


def test_sequence_length_one_keeps_the_random_frame_plan() -> None:
    files = [FileInfo(640, 360, 100)] * 3
    default = SamplePlan(files, 128, seed=1, shuffle=True)
    single = SamplePlan(files, 128, seed=1, shuffle=True, sequence_length=1)
    assert [default.train(n) for n in range(50)] == [single.train(n) for n in range(50)]
    frames = np.array([default.train(n).frame for n in range(50)])
    assert np.count_nonzero(np.diff(frames) == 1) < 5  # random, not runs


@pytest.mark.slow
def test_sequence_length_is_for_video(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(collage(tmp_path, pipeline__sequence_length=4))
    done = run_harness("validate", str(path))
    assert done.returncode == 2
    assert "pipeline.sequence_length applies to video datasets only" in done.stderr


@pytest.mark.slow
@pytest.mark.no_gpu
def test_nvdec_refused_before_any_work_without_a_gpu(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(video(tmp_path, "decoded", pipeline__backend="nvdec"))
    _prepare(path)
    done = run_harness("run", str(path), "--results", str(tmp_path / "r"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: backend nvdec not available: it decodes on an NVIDIA")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _decoded_source(tmp_path: Path, write_scenario, **changes) -> DecodedVideoSource:
    path = write_scenario(video(tmp_path, "decoded", **changes))
    assert run_harness("datagen", str(path)).returncode == 0
    root = tmp_path / "videos"
    return DecodedVideoSource(root, json.loads((root / "dataset.json").read_text()), 1)


@pytest.mark.slow
def test_nvdec_names_a_video_it_cannot_decode(tmp_path: Path, write_scenario) -> None:
    source = _decoded_source(tmp_path, write_scenario, dataset__generate__codec="mjpeg")
    with pytest.raises(HarnessError) as caught:
        check_scenario(source, use_cuda=True)
    message = str(caught.value)
    first = source.root / source.records[0]["path"]
    assert message.startswith(f"{first}: NVDEC cannot decode mjpeg video")
    assert "use pipeline.backend torch" in message


@pytest.mark.slow
def test_nvdec_names_a_video_over_its_size_limits(tmp_path: Path, write_scenario) -> None:
    source = _decoded_source(tmp_path, write_scenario)
    check_scenario(source, use_cuda=True)  # 128x96 H.264: fine
    source.records[1] = {**source.records[1], "width": 7680, "height": 4320}
    with pytest.raises(HarnessError, match=r"cam001\.mkv: 7680x4320 is outside NVDEC's h264"):
        check_scenario(source, use_cuda=True)
    assert NVDEC_LIMITS["hevc"][2:] == (8192, 8192)  # the same size is fine in HEVC
    with pytest.raises(HarnessError, match=r"needs training\.device cuda"):
        check_scenario(source, use_cuda=False)


@pytest.mark.slow
@pytest.mark.no_gpu
def test_selfcheck_gpu_refused_without_a_gpu() -> None:
    done = run_harness("selfcheck", "--gpu")
    assert done.returncode == 2
    assert done.stderr.startswith("error: selfcheck --gpu: torch sees no CUDA GPU")


@pytest.mark.slow
def test_selfcheck_plan_errors_name_the_field(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"name": "p", "runs": [{"scenario": "x.yaml", "backends": {}}]}))
    done = run_harness("selfcheck", "--plan", str(plan))
    assert done.returncode == 2
    assert f"{plan}:3:13: runs.0.backends" in done.stderr  # file:line:col of the field


@pytest.mark.slow
@pytest.mark.no_gpu
def test_selfcheck_runs_every_backend_it_can_and_says_why_not(
    tmp_path: Path, write_scenario
) -> None:
    """Every row a self-check can have: a run that passes, a backend not available here, one
    refused for this data, and a run that starts and fails (every image truncated, on_corrupt
    fail), which makes the exit code 1 and still keeps its folder and the report."""
    decoded = write_scenario(video(tmp_path, "decoded"), "decoded.yaml")
    images = write_scenario(collage(tmp_path, pipeline__on_corrupt="fail"), "collage.yaml")
    _prepare(images)
    for victim in (tmp_path / "collage/images").glob("*.npy"):
        victim.write_bytes(victim.read_bytes()[:1000])
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "tiny-selfcheck",
                "runs": [
                    {"scenario": decoded.name, "backends": {"torch": [], "nvdec": []}},
                    {"scenario": images.name, "backends": {"nvdec": [], "torch": []}},
                ],
            }
        )
    )
    report = tmp_path / "report"
    done = run_harness(
        "selfcheck", "--plan", str(plan), "--duration", "1", "--quiet",
        "--results", str(tmp_path / "r"), "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one run failed
    assert "Traceback" not in done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("scenario"))
    for title in ("samples/s", "GPU util %", "busy %", "read MB/s", "data-wait %"):
        assert title in header
    document = json.loads((report / "selfcheck.json").read_text())
    assert (
        document["format"] == "harness-selfcheck" and document["format_version"] == FORMAT_VERSION
    )
    rows = {row["backend"]: row for row in document["rows"][:2]}
    refused, failed = document["rows"][2:]
    assert refused["status"] == "refused" and "nvdec decodes video" in refused["note"]
    assert rows["torch"]["status"] == "ok" and rows["torch"]["metrics"]["samples_per_s"] > 0
    assert rows["torch"]["metrics"]["gpu_util_pct"] is None  # no GPU: not measured, not zero
    assert rows["nvdec"]["status"] == "not available"
    assert "NVIDIA GPU" in rows["nvdec"]["note"]
    # the failed row names the file; its run folder keeps what it collected
    assert failed["status"] == "failed" and "collage/images/img_" in failed["note"]
    assert "on_corrupt is fail" in failed["note"]
    (line,) = [line for line in done.stdout.splitlines() if " failed: " in line]
    assert line.startswith("tiny-collage")
    assert json.loads((Path(failed["run"]) / "summary.json").read_text())["complete"] is False
    assert (report / "report.html").exists() and (report / "report.pdf").exists()


def test_shipped_selfcheck_plans_load() -> None:
    from harness.selfcheck import CPU_PLAN, GPU_PLAN, load_plan, planned_scenarios

    for plan_file in (CPU_PLAN, GPU_PLAN):
        assert plan_file.is_relative_to(REPO)
        planned = planned_scenarios(plan_file, load_plan(plan_file), [])
        assert planned
