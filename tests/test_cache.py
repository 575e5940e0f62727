"""The frame cache through the real CLI: exact twins of decoded frames, checksums, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_harness, tiny_video_scenario

from harness.data.cache import frame_path, mask_path, read_cache_manifest
from harness.data.images import read_image
from harness.data.tracks import Tracks
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.scenario import load_scenario

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess


def _prepare(tmp_path: Path, write_scenario, **changes) -> Path:
    path = write_scenario(tiny_video_scenario(tmp_path, **changes))
    result = run_harness("datagen", str(path))
    assert result.returncode == 0, result.stderr
    return path


def _checksums_hold(cache_dir: Path) -> int:
    checked = 0
    for segment in cache_dir.glob("*/seg_*.json"):
        for name, size, crc in json.loads(segment.read_text())["files"]:
            data = (cache_dir / name).read_bytes()
            assert len(data) == size and zlib.crc32(data) == crc, name
            checked += 1
    return checked


def test_cached_frames_are_exact_twins_of_decoded_frames(tmp_path: Path, write_scenario) -> None:
    path = _prepare(tmp_path, write_scenario)
    result = run_harness("cache", str(path))
    assert result.returncode == 0, result.stderr
    assert "expansion" in result.stdout
    cache_dir = tmp_path / "cache"
    manifest = json.loads((cache_dir / "cache.json").read_text())
    assert manifest["complete"] and manifest["format_version"] == 1
    assert manifest["frames"] == 80
    assert manifest["expansion"] == pytest.approx(
        manifest["frame_bytes"] / manifest["video_bytes"], rel=1e-3
    )
    assert manifest["expansion"] > 10  # raw frames take far more room than the video
    assert _checksums_hold(cache_dir) == 160  # a frame and a mask each
    scenario = load_scenario(path).scenario
    assert read_cache_manifest(scenario)["fingerprint"] == manifest["fingerprint"]
    tracks = Tracks.load(tmp_path / "videos/videos/cam001.tracks.json")
    for index in (0, 7, 8, 19, 39):  # segment edges and mid-GOP frames
        with VideoReader(tmp_path / "videos/videos/cam001.mkv") as reader:
            decoded = reader.read(index)
        cached = np.load(frame_path(cache_dir, "cam001", index, 8, "npy"))
        np.testing.assert_array_equal(decoded, cached)
        np.testing.assert_array_equal(
            np.load(mask_path(cache_dir, "cam001", index, 8, "npy")), tracks.mask(index)
        )
    again = run_harness("cache", str(path))
    assert again.returncode == 0 and "is up to date" in again.stdout


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_picture_cache_formats(tmp_path: Path, write_scenario, fmt: str) -> None:
    path = _prepare(
        tmp_path, write_scenario, pipeline__cache__format=fmt, dataset__generate__videos=1
    )
    assert run_harness("cache", str(path)).returncode == 0
    cache_dir = tmp_path / "cache"
    with VideoReader(tmp_path / "videos/videos/cam000.mkv") as reader:
        decoded = reader.read(13)
    cached = read_image(frame_path(cache_dir, "cam000", 13, 8, fmt))
    difference = np.abs(cached.astype(int) - decoded.astype(int))
    assert difference.max() == 0 if fmt == "png" else difference.mean() < 4
    assert read_image(mask_path(cache_dir, "cam000", 13, 8, fmt)).dtype == np.uint8


def test_cache_resumes_after_a_killed_build(tmp_path: Path, write_scenario) -> None:
    path = _prepare(tmp_path, write_scenario, dataset__generate__frames=160)
    cache_dir = tmp_path / "cache"
    build = subprocess.Popen(
        [sys.executable, "-m", "harness", "cache", str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list(cache_dir.glob("*/seg_*.json"))) < 3:
        assert build.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    assert not (cache_dir / "cache.json").exists()
    with pytest.raises(HarnessError, match="no complete frame cache"):
        read_cache_manifest(load_scenario(path).scenario)  # an incomplete cache is never used
    done_before = len(list(cache_dir.glob("*/seg_*.json")))
    assert done_before < 40
    resumed = run_harness("cache", str(path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {done_before} of 40 segments already built" in resumed.stdout
    assert not list(cache_dir.rglob("*.tmp-*"))
    assert _checksums_hold(cache_dir) == 2 * 320
    fresh = write_scenario(  # built by two processes: the same files as one makes
        tiny_video_scenario(
            tmp_path,
            dataset__generate__frames=160,
            pipeline__cache__path=str(tmp_path / "fresh"),
            pipeline__cache__workers=2,
        ),
        "fresh.yaml",
    )
    assert run_harness("cache", str(fresh)).returncode == 0
    segments = sorted(cache_dir.glob("*/seg_*.json"))
    assert len(segments) == 40
    for segment in segments:
        twin = tmp_path / "fresh" / segment.relative_to(cache_dir)
        assert json.loads(segment.read_text())["files"] == json.loads(twin.read_text())["files"]


def test_cache_is_rebuilt_when_its_settings_change(tmp_path: Path, write_scenario) -> None:
    path = _prepare(tmp_path, write_scenario, dataset__generate__videos=1)
    assert run_harness("cache", str(path)).returncode == 0
    stale = load_scenario(path, ["pipeline.cache.format=png"]).scenario
    with pytest.raises(HarnessError, match="built from another dataset or with other settings"):
        read_cache_manifest(stale)
    rebuilt = run_harness("cache", str(path), "-o", "pipeline.cache.format=png")
    assert rebuilt.returncode == 0
    assert not list((tmp_path / "cache").rglob("*.npy"))  # the old format's files are gone
    assert read_cache_manifest(stale)["format_name"] == "png"


def test_cache_needs_its_dataset_and_an_own_folder(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(tiny_video_scenario(tmp_path))
    result = run_harness("cache", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: no dataset at {tmp_path / 'videos'}: create it with `harness datagen SCENARIO`"
    )
    _prepare(tmp_path, write_scenario)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache/precious.txt").write_text("not ours")
    result = run_harness("cache", str(path))
    assert result.returncode == 2 and "is not a harness frame cache" in result.stderr
    assert (tmp_path / "cache/precious.txt").exists()


def test_decoded_scenarios_need_no_cache(tmp_path: Path, write_scenario) -> None:
    path = _prepare(tmp_path, write_scenario, pipeline__mode="decoded")
    result = run_harness("cache", str(path))
    assert result.returncode == 0
    assert "nothing to build" in result.stdout


def test_full_disk_during_cache_build(tmp_path: Path, write_scenario, small_disk: Path) -> None:
    path = _prepare(tmp_path, write_scenario, pipeline__cache__path=str(small_disk / "cache"))
    result = run_harness("cache", str(path))  # 80 frames of 37 kB each: more than 1 MiB
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: disk full while writing {small_disk}")
    assert not (small_disk / "cache/cache.json").exists()
    assert not list(small_disk.rglob("*.tmp-*"))
    with pytest.raises(HarnessError, match="no complete frame cache"):
        read_cache_manifest(load_scenario(path).scenario)
