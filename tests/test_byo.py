"""Bring-your-own data through the real CLI: indexing, derived labels, corrupt files named."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import byo_index, run_harness, tiny_collage_scenario, tiny_video_scenario
from PIL import Image

from harness.data.cache import mask_path
from harness.data.labels import derive_mask
from harness.data.tracks import Tracks
from harness.data.video_reader import VideoReader

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess


@pytest.fixture
def camera_videos(tmp_path: Path, write_scenario) -> Path:
    """Two generated camera videos (MP4, every frame encoded) with their tracks, to be used as
    someone's own footage."""
    scenario = tiny_video_scenario(tmp_path / "gen", dataset__generate__unique="full")
    path = write_scenario(scenario, "gen.yaml")
    assert run_harness("datagen", str(path)).returncode == 0
    return tmp_path / "gen/videos/videos"


def _byo_video_scenario(tmp_path: Path, folder: Path, **extra) -> dict:
    scenario = tiny_video_scenario(tmp_path, **extra)
    del scenario["dataset"]["generate"]
    scenario["dataset"].update(path=str(folder), classes=4)
    return scenario


def _write_mask_video(path: Path, masks: list[np.ndarray], fps: int) -> None:
    """A lossless gray mask stream (FFV1), as a user's labelling tool might export."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = masks[0].shape[1], masks[0].shape[0], "gray"
        for index, mask in enumerate(masks):
            frame = av.VideoFrame.from_ndarray(mask, format="gray")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_videos_with_label_rule_are_indexed_and_cached(
    tmp_path: Path, write_scenario, camera_videos: Path, index_dir: Path
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    shutil.copy(camera_videos / "cam000.mp4", folder / "lobby.mp4")
    scenario = _byo_video_scenario(tmp_path, folder, dataset__label_rule="luma_bins")
    path = write_scenario(scenario)
    result = run_harness("datagen", str(path))
    assert result.returncode == 0, result.stderr
    assert "labels: derived:luma_bins" in result.stdout
    manifest = byo_index(index_dir)
    assert not (folder / "dataset.json").exists()  # the brought folder is only read
    assert manifest["source"] == "byo" and manifest["labels"] == "derived:luma_bins"
    assert manifest["files"][0]["frames"] == 40
    assert run_harness("datagen", str(path)).stdout.startswith("bring-your-own video at")
    assert run_harness("cache", str(path)).returncode == 0
    with VideoReader(folder / "lobby.mp4") as reader:
        frame = reader.read(17)
    cached = np.load(mask_path(tmp_path / "cache", "lobby", 17, 8, "npy"))
    np.testing.assert_array_equal(cached, derive_mask(frame, "luma_bins", 4))


def test_videos_with_mask_videos(
    tmp_path: Path, write_scenario, camera_videos: Path, index_dir: Path
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    shutil.copy(camera_videos / "cam001.mp4", folder / "gate.mp4")
    tracks = Tracks.load(camera_videos / "cam001.tracks.json")
    _write_mask_video(folder / "gate.mask.mkv", [tracks.mask(t) for t in range(40)], fps=25)
    path = write_scenario(_byo_video_scenario(tmp_path, folder))
    result = run_harness("datagen", str(path))
    assert result.returncode == 0, result.stderr
    assert byo_index(index_dir)["files"][0]["mask"] == "gate.mask.mkv"
    assert run_harness("cache", str(path)).returncode == 0
    for index in (0, 21, 39):
        np.testing.assert_array_equal(
            np.load(mask_path(tmp_path / "cache", "gate", index, 8, "npy")), tracks.mask(index)
        )


def test_videos_without_masks_or_rule_are_refused(
    tmp_path: Path, write_scenario, camera_videos: Path
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    shutil.copy(camera_videos / "cam000.mp4", folder / "lobby.mp4")
    result = run_harness("datagen", str(write_scenario(_byo_video_scenario(tmp_path, folder))))
    assert result.returncode == 2
    assert f"{folder / 'lobby.mp4'}: no mask video lobby.mask.mkv" in result.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage", "cut-short"])
def test_corrupt_video_is_named(
    tmp_path: Path, write_scenario, camera_videos: Path, damage: str, index_dir: Path
) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    shutil.copy(camera_videos / "cam000.mp4", folder / "good.mp4")
    bad = folder / "bad.mp4"
    data = (camera_videos / "cam001.mp4").read_bytes()
    if damage == "truncated":  # copy stopped half way: MP4 index (at the end) is missing
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00not a video\xff" * 500)
    else:  # a stream whose header promises more frames than it holds
        with (
            av.open(str(camera_videos / "cam001.mp4")) as source,
            av.open(str(folder / "bad.mkv"), "w") as target,
        ):
            stream = target.add_stream_from_template(source.streams.video[0])
            for count, packet in enumerate(source.demux(source.streams.video[0])):
                if packet.dts is None or count >= 12:
                    continue
                packet.stream = stream
                target.mux(packet)
        bad = folder / "bad.mkv"
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 2 // 3])
    scenario = _byo_video_scenario(tmp_path, folder, dataset__label_rule="luma_bins")
    result = run_harness("datagen", str(write_scenario(scenario)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: "), lines
    if damage == "cut-short":  # its packets counted against its header: both counts said
        assert "truncated or damaged: " in lines[0] and ", its header declares " in lines[0]
    assert not list(index_dir.glob("*/*.json"))  # nothing half-indexed is left to be used


def _write_images(folder: Path, count: int, masks: bool = True) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (100, 90, 3), dtype=np.uint8)).save(
            folder / f"images/shot{index}.jpg"
        )
        if masks:
            Image.fromarray(rng.integers(0, 3, (100, 90), dtype=np.uint8)).save(
                folder / f"masks/shot{index}.png"
            )


def _byo_image_scenario(tmp_path: Path, folder: Path, **extra) -> dict:
    scenario = tiny_collage_scenario(tmp_path, **extra)
    del scenario["dataset"]["generate"]
    scenario["dataset"].update(path=str(folder), classes=3)
    return scenario


def test_images_with_masks(tmp_path: Path, write_scenario, index_dir: Path) -> None:
    folder = tmp_path / "photos"
    _write_images(folder, 3)
    result = run_harness("datagen", str(write_scenario(_byo_image_scenario(tmp_path, folder))))
    assert result.returncode == 0, result.stderr
    manifest = byo_index(index_dir)
    assert manifest["labels"] == "masks" and len(manifest["files"]) == 3
    assert manifest["files"][0] == {
        "path": "images/shot0.jpg",
        "bytes": (folder / "images/shot0.jpg").stat().st_size,
        "width": 90,
        "height": 100,
        "mode": "RGB",
        "mask": "masks/shot0.png",
        "mask_bytes": (folder / "masks/shot0.png").stat().st_size,
        "mask_mode": "L",
    }


def test_image_problems_are_named(tmp_path: Path, write_scenario) -> None:
    folder = tmp_path / "photos"
    _write_images(folder, 3)
    (folder / "masks/shot1.png").unlink()
    path = write_scenario(_byo_image_scenario(tmp_path, folder))
    result = run_harness("datagen", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {folder / 'images/shot1.jpg'}: no mask masks/shot1.png or .npy; add masks or "
        "set dataset.label_rule"
    )
    rule = write_scenario(
        _byo_image_scenario(tmp_path, folder, dataset__label_rule="luma_bins"), "rule.yaml"
    )
    assert run_harness("datagen", str(rule)).returncode == 0
    data = (folder / "images/shot2.jpg").read_bytes()
    (folder / "images/shot2.jpg").write_bytes(data[: len(data) // 3])
    result = run_harness("datagen", str(rule))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {folder / 'images/shot2.jpg'}: corrupt or truncated")
    too_small = run_harness("datagen", str(rule), "-o", "pipeline.crop=128")
    assert "smaller than pipeline.crop (128)" in too_small.stderr


def test_missing_folder(tmp_path: Path, write_scenario) -> None:
    result = run_harness(
        "datagen", str(write_scenario(_byo_image_scenario(tmp_path, tmp_path / "nowhere")))
    )
    assert result.returncode == 2
    assert "no such folder (bring-your-own data)" in result.stderr
