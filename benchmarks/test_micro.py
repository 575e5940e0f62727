"""Micro-benchmarks (pytest-benchmark): the cost of fetching one sample in each pipeline, and of
one collector sample. Not part of the test command (``testpaths`` is ``tests``); run them with

    python -m pytest benchmarks/test_micro.py --benchmark-json=.benchmarks/micro.json

and gate a change on a saved run (see the README, "Gating a change"):

    python -m pytest benchmarks/test_micro.py --benchmark-autosave        # on the base commit
    python -m pytest benchmarks/test_micro.py --benchmark-compare --benchmark-compare-fail=min:20%

Every test draws the same samples in the same order (the sample plan is seeded), so two runs time
the same work; the fastest of those rounds is the one least disturbed by other processes, which
makes ``min`` the statistic to gate on where the machine is not quiet.

What is timed is the CPU side of a fetch, on data in the page cache (the first round reads it):
read syscalls or page faults served from memory, decoding, cropping. Storage speed is what
``harness run`` measures; these numbers say what the pipeline itself costs per sample, so that a
change to a decoder or a reader shows up here before it shows up as a slower run.

The datasets are generated once per session with the real CLI (``harness datagen`` and
``harness cache``) at the quick suite's sizes: 1536x1536 collage images (7.1 MB raw), 640x360
H.264 video with a GOP of 300 frames.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.collect import make_collectors
from harness.data.cache import read_cache_manifest
from harness.data.manifest import require_complete
from harness.pipeline.plan import SamplePlan
from harness.pipeline.sources import Source, build_source
from harness.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
CROP = 128
SEED = 0


def _harness(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"harness {' '.join(args)} failed: {done.stderr.strip()}")


def _collage(root: Path, image_format: str) -> dict[str, Any]:
    return {
        "name": f"micro-collage-{image_format}",
        "dataset": {
            "kind": "image_collage",
            "path": str(root / f"collage-{image_format}"),
            "generate": {
                "images": 2,
                "width": 1536,
                "height": 1536,
                "classes": 5,
                "objects_per_image": 40,
                "format": image_format,
                "seed": 0,
                "workers": 1,
            },
        },
        "pipeline": {"crop": CROP},
        "training": {"steps": 10},
    }


def _video(root: Path, mode: str) -> dict[str, Any]:
    scenario: dict[str, Any] = {
        "name": f"micro-video-{mode}",
        "dataset": {
            "kind": "video",
            "path": str(root / "videos"),
            "generate": {
                "videos": 1,
                "frames": 600,
                "width": 640,
                "height": 360,
                "fps": 30,
                "codec": "h264",
                "gop": 300,
                "bitrate_kbps": 800,
                "classes": 5,
                "objects": 4,
                "seed": 0,
                "workers": 1,
            },
        },
        "pipeline": {"mode": mode, "crop": CROP, "decoder_threads": 1},
        "training": {"steps": 10},
    }
    if mode == "cached":
        scenario["pipeline"]["cache"] = {"path": str(root / "frame-cache"), "format": "npy"}
    return scenario


@pytest.fixture(scope="session")
def scenario_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scenario files with their data generated (and the frame cache built) by the real CLI."""
    root = tmp_path_factory.mktemp("micro")
    scenarios = {
        "npy": _collage(root, "npy"),
        "png": _collage(root, "png"),
        "jpeg": _collage(root, "jpeg"),
        "decoded": _video(root, "decoded"),
        "cached": _video(root, "cached"),
    }
    files: dict[str, Path] = {}
    for key, scenario in scenarios.items():
        path = root / f"{key}.yaml"
        path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        files[key] = path
    _harness("datagen", *(str(p) for p in files.values()))
    _harness("cache", str(files["cached"]))
    return files


def _source(path: Path) -> tuple[Source, SamplePlan]:
    scenario = load_scenario(path).scenario
    manifest = require_complete(Path(scenario.dataset.path))
    cache = read_cache_manifest(scenario) if scenario.pipeline.mode == "cached" else None
    source = build_source(scenario, manifest, cache)
    return source, SamplePlan(source.files, CROP, SEED, shuffle=True)


def _fetch_one_sample(benchmark: Any, path: Path) -> None:
    """Time ``Source.load`` on successive random samples (a new sample every call, as training
    draws them), after one warm-up round that opens the files."""
    source, plan = _source(path)
    numbers = itertools.count()

    def fetch() -> None:
        image, mask, _reads = source.load(plan.train(next(numbers)), CROP)
        assert image.shape == (CROP, CROP, 3) and mask.shape == (CROP, CROP)

    benchmark.pedantic(fetch, rounds=30, iterations=1, warmup_rounds=3)


@pytest.mark.parametrize("image_format", ["npy", "png", "jpeg"])
def test_collage_crop(benchmark: Any, scenario_files: dict[str, Path], image_format: str) -> None:
    """npy: a memory-mapped crop (only its rows are touched); PNG and JPEG: the whole 1536x1536
    image is read and decoded for every crop, as those formats require."""
    benchmark.group = "fetch one sample"
    _fetch_one_sample(benchmark, scenario_files[image_format])


def test_video_decoded_random_frame(benchmark: Any, scenario_files: dict[str, Path]) -> None:
    """PyAV: seek to the keyframe before a random frame and decode forward (GOP 300)."""
    benchmark.group = "fetch one sample"
    _fetch_one_sample(benchmark, scenario_files["decoded"])


def test_video_cached_frame(benchmark: Any, scenario_files: dict[str, Path]) -> None:
    """The same random frames read whole from an npy frame cache."""
    benchmark.group = "fetch one sample"
    _fetch_one_sample(benchmark, scenario_files["cached"])


@pytest.mark.parametrize("name", ["io", "cpu", "gpu"])
def test_collector_sample(benchmark: Any, scenario_files: dict[str, Path], name: str) -> None:
    """One sample of a collector, as its thread takes it at every tick (10 Hz by default): what
    a run pays per tick. The process tree sampled is this one's."""
    benchmark.group = "collector: one sample"
    dataset = Path(load_scenario(scenario_files["npy"]).scenario.dataset.path)
    (collector,) = make_collectors(
        [name], rate_hz=10.0, root_pid=os.getpid(), dataset_path=dataset, t0=time.monotonic()
    )
    if collector.unavailable is not None:
        pytest.skip(f"{name} collector {collector.unavailable}")
    try:
        benchmark.pedantic(collector._sample, rounds=200, iterations=1, warmup_rounds=5)
    finally:
        collector._close_quietly()
