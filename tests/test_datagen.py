"""Dataset generation through the real CLI: manifests, determinism, exact masks, bad input."""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_harness, tiny_collage_scenario, tiny_video_scenario

from harness.data.images import read_image
from harness.data.tracks import Tracks
from harness.data.video_reader import VideoReader

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess


def _digest(folder: Path, pattern: str) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))
    }


def _saturation(image: np.ndarray) -> np.ndarray:
    rgb = image.astype(np.float32)
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0)


def test_collage_manifest_and_determinism(tmp_path: Path, write_scenario) -> None:
    first = write_scenario(tiny_collage_scenario(tmp_path), "a.yaml")
    second = write_scenario(
        tiny_collage_scenario(tmp_path, dataset__path=str(tmp_path / "again")), "b.yaml"
    )
    for path in (first, second):
        result = run_harness("datagen", str(path))
        assert result.returncode == 0, result.stderr
    assert "generated image_collage dataset" in result.stdout
    root = tmp_path / "collage"
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["format_version"] == 1 and manifest["complete"]
    assert manifest["classes"] == 4 and manifest["params"]["seed"] == 3
    assert len(manifest["files"]) == 3
    assert manifest["total_bytes"] == sum(
        os.path.getsize(root / f[key]) for f in manifest["files"] for key in ("path", "mask")
    )
    image = np.load(root / "images/img_00000.npy", mmap_mode="r")  # memory-mappable raw array
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    assert _digest(root, "*/*.npy") == _digest(tmp_path / "again", "*/*.npy")
    other = write_scenario(
        tiny_collage_scenario(
            tmp_path, dataset__path=str(tmp_path / "seed4"), dataset__generate__seed=4
        ),
        "c.yaml",
    )
    assert run_harness("datagen", str(other)).returncode == 0
    assert _digest(root, "*/*.npy") != _digest(tmp_path / "seed4", "*/*.npy")


def test_collage_masks_mark_the_drawn_objects(tmp_path: Path, write_scenario) -> None:
    # Objects are saturated colours on a muted background: the mask must say where they are.
    path = write_scenario(
        tiny_collage_scenario(
            tmp_path,
            dataset__generate__format="png",
            dataset__generate__width=320,
            dataset__generate__height=240,
        )
    )
    assert run_harness("datagen", str(path)).returncode == 0
    root = tmp_path / "collage"
    image = read_image(root / "images/img_00001.png")
    mask = read_image(root / "masks/img_00001.png")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2, 3}
    assert len(np.unique(mask)) >= 3
    agreement = ((_saturation(image) > 0.4) == (mask > 0)).mean()
    assert agreement > 0.97
    hues = {}
    for cls in range(1, 4):
        pixels = image[mask == cls].astype(np.float32) / 255
        if len(pixels):
            hues[cls] = colorsys.rgb_to_hsv(*np.median(pixels, axis=0))[0]
    assert len(set(np.round(list(hues.values()), 2))) == len(hues)  # one hue per class


def test_jpeg_collage_keeps_masks_lossless(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(tiny_collage_scenario(tmp_path, dataset__generate__format="jpeg"))
    assert run_harness("datagen", str(path)).returncode == 0
    root = tmp_path / "collage"
    assert sorted(p.name for p in (root / "images").iterdir())[0] == "img_00000.jpg"
    npy = write_scenario(
        tiny_collage_scenario(tmp_path, dataset__path=str(tmp_path / "n")), "n.yaml"
    )
    assert run_harness("datagen", str(npy)).returncode == 0
    np.testing.assert_array_equal(
        read_image(root / "masks/img_00002.png"), np.load(tmp_path / "n/masks/img_00002.npy")
    )


def test_video_frames_masks_and_random_access(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(tiny_video_scenario(tmp_path))
    result = run_harness("datagen", str(path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "videos"
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["total_frames"] == 80 and len(manifest["files"]) == 2
    record = manifest["files"][1]
    assert record["codec"] == "h264" and record["path"] == "videos/cam001.mkv"
    assert "planned" in result.stdout and "4 KiB blocks distinct" in result.stdout
    assert set(manifest["repetition"]) >= {"distinct_block_share", "compression_ratio"}
    tracks = Tracks.load(root / record["tracks"])
    with VideoReader(root / record["path"]) as reader:
        assert reader.declared_frames == 40
        sequential = dict(reader.frames())
    assert sorted(sequential) == list(range(40))
    for index in (0, 9, 10, 23, 39):  # keyframes, just before one, mid-GOP, the last frame
        with VideoReader(root / record["path"]) as reader:
            np.testing.assert_array_equal(reader.read(index), sequential[index])
    agreements = [
        ((_saturation(sequential[t]) > 0.4) == (tracks.mask(t) > 0)).mean() for t in range(40)
    ]
    assert min(agreements) > 0.9, agreements  # lossy video blurs only the edges
    assert any(tracks.mask(t).any() for t in range(40))


def test_video_generation_is_deterministic(tmp_path: Path, write_scenario) -> None:
    for name in ("a", "b"):  # every frame encoded (pooled videos: test_datagen_scale)
        path = write_scenario(
            tiny_video_scenario(
                tmp_path, dataset__path=str(tmp_path / name), dataset__generate__unique="full"
            ),
            f"{name}.yaml",
        )
        assert run_harness("datagen", str(path)).returncode == 0
    assert _digest(tmp_path / "a/videos", "*") == _digest(tmp_path / "b/videos", "*")


@pytest.mark.parametrize("codec", ["hevc", "vp9", "mjpeg"])
def test_other_codecs_decode_to_every_frame(tmp_path: Path, write_scenario, codec: str) -> None:
    path = write_scenario(
        tiny_video_scenario(tmp_path, dataset__generate__codec=codec, dataset__generate__videos=1)
    )
    result = run_harness("datagen", str(path))
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "videos/dataset.json").read_text())["files"][0]
    with VideoReader(tmp_path / "videos" / record["path"]) as reader:
        indices = [index for index, _frame in reader.frames()]
        assert indices == list(range(40))
        reader.read(25)


def test_up_to_date_changed_and_forced(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(tiny_collage_scenario(tmp_path))
    assert run_harness("datagen", str(path)).returncode == 0
    image = tmp_path / "collage/images/img_00000.npy"
    before = image.stat().st_mtime_ns
    again = run_harness("datagen", str(path))
    assert again.returncode == 0 and "is up to date" in again.stdout
    assert image.stat().st_mtime_ns == before
    changed = run_harness("datagen", str(path), "-o", "dataset.generate.seed=11")
    assert changed.returncode == 2
    assert "other parameters (seed 3 -> 11)" in changed.stderr and "--force" in changed.stderr
    forced = run_harness("datagen", str(path), "-o", "dataset.generate.seed=11", "--force")
    assert forced.returncode == 0
    assert json.loads((tmp_path / "collage/dataset.json").read_text())["params"]["seed"] == 11


def test_resume_keeps_finished_files(tmp_path: Path, write_scenario) -> None:
    path = write_scenario(tiny_collage_scenario(tmp_path))
    assert run_harness("datagen", str(path)).returncode == 0
    root = tmp_path / "collage"
    manifest = json.loads((root / "dataset.json").read_text())
    manifest["complete"] = False  # as left by an interrupted generation
    (root / "dataset.json").write_text(json.dumps(manifest))
    (root / "images/img_00002.npy").unlink()
    (root / "images/.img_00002.npy.tmp-999").write_bytes(b"partial")
    kept = (root / "images/img_00000.npy").stat().st_mtime_ns
    result = run_harness("datagen", str(path))
    assert result.returncode == 0
    assert "resuming: 2 of 3 files already generated" in result.stdout
    assert (root / "images/img_00000.npy").stat().st_mtime_ns == kept
    assert (root / "images/img_00002.npy").exists()
    assert not list(root.rglob("*.tmp-*"))


def test_foreign_folder_and_unwritable_path(tmp_path: Path, write_scenario) -> None:
    (tmp_path / "collage").mkdir()
    (tmp_path / "collage/notes.txt").write_text("someone else's")
    path = write_scenario(tiny_collage_scenario(tmp_path))
    result = run_harness("datagen", str(path))
    assert result.returncode == 2
    assert "is not empty and holds no harness dataset" in result.stderr
    (tmp_path / "a-file").write_text("")
    blocked = write_scenario(
        tiny_collage_scenario(tmp_path, dataset__path=str(tmp_path / "a-file/data")), "blocked.yaml"
    )
    result = run_harness("datagen", str(blocked))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write in {tmp_path / 'a-file/data'}: {tmp_path / 'a-file'} is not a folder "
        "(a regular file)"
    ]


def test_full_disk_leaves_no_file_that_looks_complete(
    tmp_path: Path, write_scenario, small_disk: Path
) -> None:
    path = write_scenario(
        tiny_collage_scenario(
            tmp_path,
            dataset__path=str(small_disk / "collage"),
            dataset__generate__images=140,
            dataset__generate__width=16,
            dataset__generate__height=16,
            pipeline__crop=16,
        )
    )  # 1.3 kB an image by the planned bytes (so not refused up front, see test_datagen_scale),
    # but 2 x 4 KiB pages of tmpfs: 280 files > 1 MiB
    result = run_harness("datagen", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: disk full while writing {small_disk}")
    manifest = json.loads((small_disk / "collage/dataset.json").read_text())
    assert manifest["complete"] is False
    assert not list(small_disk.rglob("*.tmp-*"))
    for image in (small_disk / "collage/images").glob("*.npy"):
        assert np.load(image).shape == (16, 16, 3)  # every file there is whole
    # Room again (the same filesystem, grown): the generation resumes where it stopped and
    # ends complete (that a resumed generation makes an uninterrupted one's files: test_orphans).
    kept = len(list((small_disk / "collage/images").glob("*.npy")))
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    resumed = run_harness("datagen", str(path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {kept} of 140 files already generated" in resumed.stdout
    assert json.loads((small_disk / "collage/dataset.json").read_text())["complete"] is True
    images = sorted((small_disk / "collage/images").glob("*.npy"))
    assert len(images) == 140 and all(np.load(i).shape == (16, 16, 3) for i in images)
