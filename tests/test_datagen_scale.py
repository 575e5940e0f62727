"""Datasets at scale, in process: segment-repeated videos (exact masks, resume mid-file), the pooled
collage, sizing by RAM and the refusal when the disk is too small, repetition measured."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_collage_scenario, tiny_video_scenario

from harness.data import collage, repetition
from harness.data.progress import GenerationProgress, progress_path
from harness.data.remux import (
    encode_pool,
    make_from_pool,
    partial_path,
    plan_schedule,
    pool_path,
)
from harness.data.sizing import Clients, Plan, count_for, machine_ram, parse_bytes
from harness.data.tracks import Tracks
from harness.data.video import SceneRenderer, generate_tracks, outputs
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.scenario import CollageGenerate, VideoGenerate


def _video(**changes: object) -> VideoGenerate:
    params = tiny_video_scenario(Path("."))["dataset"]["generate"]
    return VideoGenerate(
        **{**params, "videos": 1, "pool_segments": 2, "segment_gops": 1, **changes}
    )


def test_schedule_uses_every_pool_segment_and_never_repeats_one_at_once() -> None:
    schedule, pool_frames = plan_schedule(_video(frames=1005, pool_segments=3), 0)
    assert schedule.segment_frames == 10 and pool_frames == 35  # 3 segments + a 5-frame tail
    assert schedule.order[:3] == (0, 1, 2) and len(schedule.order) == 100
    assert all(a != b for a, b in zip(schedule.order, schedule.order[1:], strict=False))
    assert {schedule.source(t) for t in range(1000, 1005)} == set(range(30, 35))
    assert schedule.source(25) == 25 and schedule.source(73) == 10 * schedule.order[7] + 3


def test_repeated_segments_decode_bit_identical_with_exact_masks(tmp_path: Path) -> None:
    params = _video(frames=65)  # segments 0 1 x y z + a 5-frame tail
    make_from_pool(tmp_path, params, 0)
    tracks_file, video_file = (tmp_path / name for name in outputs(params, 0))
    assert video_file.suffix == ".mkv" and not pool_path(video_file).exists()
    assert not progress_path(video_file).exists()
    tracks = Tracks.load(tracks_file)
    assert tracks.frames == 65 and tracks.schedule is not None
    with VideoReader(video_file) as reader:
        assert reader.declared_frames == 65
        frames = dict(reader.frames())
        assert sorted(frames) == list(range(65))
        for index in (9, 10, 39, 64):  # last of a GOP, a keyframe, the tail's end
            np.testing.assert_array_equal(reader.read(index), frames[index])
    for t in range(50):  # a frame and the pool frame it repeats: the same pixels, the same mask
        source = tracks.schedule.source(t)
        np.testing.assert_array_equal(frames[t], frames[source])
        np.testing.assert_array_equal(tracks.mask(t), tracks.mask(source))
    saturated = [np.ptp(frames[t].astype(int), axis=2) > 60 for t in range(65)]
    agreement = [((saturated[t]) == (tracks.mask(t) > 0)).mean() for t in range(65)]
    assert min(agreement) > 0.9, agreement


@pytest.mark.parametrize("codec", ["vp9", "mjpeg"])
def test_pooled_videos_of_every_container_declare_their_whole_length(
    tmp_path: Path, codec: str
) -> None:
    """Matroska's duration ends at the last frame's end, not its start: a reader that counts
    frames from it (a brought dataset) must find them all."""
    params = _video(frames=33, codec=codec)
    make_from_pool(tmp_path, params, 0)
    with VideoReader(tmp_path / outputs(params, 0)[1]) as reader:
        assert reader.declared_frames == 33
        reader.read(32)


def test_interrupted_video_resumes_without_rewriting(tmp_path: Path) -> None:
    params = _video(frames=400, crf=None, bitrate_kbps=300)  # a bitrate: the pool settles first
    make_from_pool(tmp_path / "whole", params, 0)
    whole = (tmp_path / "whole" / outputs(params, 0)[1]).read_bytes()
    # As a killed writer leaves it: the pool, a partial file longer than its durable part.
    root = tmp_path / "cut"
    video = root / outputs(params, 0)[1]
    video.parent.mkdir(parents=True)
    durable = len(whole) * 2 // 3
    marker = durable - 100  # were this byte rewritten, the marker would be gone
    partial = bytearray(whole[:durable]) + b"\0" * 5000
    partial[marker] ^= 0xFF
    record = json.dumps({"bytes": durable + 5000, "durable_bytes": durable})
    _schedule, pool_frames = plan_schedule(params, 0)
    renderer = SceneRenderer(params, 0, generate_tracks(params, 0, frames=pool_frames))
    encode_pool(pool_path(video), params, renderer, pool_frames, 1)
    partial_path(video).write_bytes(partial)
    progress_path(video).write_text(record)
    make_from_pool(root, params, 0)
    resumed = bytearray(video.read_bytes())
    assert len(resumed) == len(whole) and resumed[marker] != whole[marker]
    resumed[marker] ^= 0xFF
    assert resumed == whole
    # Without its pool, a partial video is not trusted: it starts over.
    video.unlink()
    partial_path(video).write_bytes(partial)
    progress_path(video).write_text(record)
    make_from_pool(root, params, 0)
    assert video.read_bytes() == whole


def test_pooled_collage_is_exact_and_repeats_no_crop(tmp_path: Path) -> None:
    settings = tiny_collage_scenario(tmp_path)["dataset"]["generate"]
    params = CollageGenerate(**{**settings, "images": 12, "format": "png"})
    count = collage.pool_count(params)
    offsets = [collage.pool_offset(params, i) for i in range(12)]
    assert count == 8 and len(set(offsets)) == 12
    images = [collage.render_image(params, i)[0].copy() for i in range(12)]
    masks = [collage.render_image(params, i)[1].copy() for i in range(12)]
    crops = {images[i][20:84, 30:94].tobytes() for i in range(12)}
    assert len(crops) == 12  # no two images show the same crop at the same place
    canvas, dy, dx = offsets[8]  # the second image drawn from canvas 0
    _images, pool_masks = collage._pool(params)
    shifted = np.roll(pool_masks[canvas], (-dy, -dx), axis=(0, 1))
    fresh = masks[8] != shifted  # only where this image's own objects were drawn
    assert 0 < fresh.mean() < 0.5
    saturation = np.ptp(images[8].astype(int), axis=2) > 60
    assert (saturation == (masks[8] > 0)).mean() > 0.9
    full = CollageGenerate(**{**settings, "unique": "full"})
    assert collage.render_image(full, 0)[0].shape == (120, 160, 3)


def test_sizing_arithmetic_with_client_ram_and_hosts() -> None:
    assert parse_bytes("256GB") == 256 * 10**9 and parse_bytes("1.5TiB") == int(1.5 * 2**40)
    assert parse_bytes("4096") == 4096
    with pytest.raises(HarnessError, match="512GB or 256GiB"):
        parse_bytes("lots")
    clients = Clients(parse_bytes("512GB"), hosts=4)
    assert clients.target_bytes() == 5 * 4 * 512 * 10**9
    image = 5040 * 5040 * 4 + 256  # an npy image and its mask
    assert count_for(clients.target_bytes(), image) == 100_781
    # 12 cameras at 1,400 kb/s and 30 fps: 5,833 bytes a frame
    assert count_for(clients.target_bytes(), 1400e3 / 8 / 30, 12) == 146_285_715
    assert machine_ram() > 2**28


def test_refuses_when_the_disk_cannot_hold_it(tmp_path: Path, cli, write_scenario) -> None:
    scenario = tiny_collage_scenario(tmp_path)
    del scenario["dataset"]["generate"]["images"]
    scenario["dataset"]["generate"]["size"] = "5x-ram"
    path = write_scenario(scenario)
    result = cli("datagen", path, "--client-ram", "2PB", "--hosts", "3")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "not enough space on" in line and "3 clients x 2000000.0 GB" in result.stdout
    assert re.search(r"needs [0-9.]+ GB more, [0-9.]+ GB is free", line), line
    assert list((tmp_path / "collage").iterdir()) == []  # nothing written, not even a manifest
    # This machine alone: 5x its RAM, refused where the disk is smaller (as on the 2-core VM).
    five_ram = Clients.this_machine().target_bytes()
    if five_ram > Plan(tmp_path, 0, 0, True).free_bytes():
        assert cli("datagen", path).returncode == 2
    assert cli("datagen", path, "--client-ram", "lots").returncode == 2


def test_repetition_counts_equal_blocks_and_compressibility(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    unique = rng.integers(0, 256, 4 * 4096, dtype=np.uint8).tobytes()
    (tmp_path / "a").write_bytes(block * 4 + unique)
    (tmp_path / "b").write_bytes(bytes(8 * 4096))
    measured = repetition.measure([tmp_path / "a", tmp_path / "b"])
    assert measured["sample_bytes"] == 16 * 4096
    assert measured["distinct_block_share"] == pytest.approx(6 / 16)
    assert 2.5 < measured["compression_ratio"] < 4  # zeros and repeats compress, noise does not
    sampled = repetition.sample_chunks([tmp_path / "a", tmp_path / "b"], budget=4096)
    assert sampled == [(tmp_path / "a", 0)]  # more files than the budget's chunks: a subset
    assert "37.5 % of 4 KiB blocks distinct" in repetition.describe(measured)


def test_progress_line_counts_running_and_finished_files() -> None:
    running = [
        ("cam001", {"bytes": 5 * 10**8, "frames": 250, "total_frames": 1000}),
        ("cam002", {"stage": "encoding its pool", "total_frames": 1000}),
    ]
    progress = GenerationProgress(
        "generating video",
        4 * 10**9,
        4000,
        lambda: running,
        lambda done: (done * 10**9, done * 1000),
        stream=open("/dev/null", "w"),  # noqa: SIM115 - closed with the process
    )
    line = progress.poll(1)
    assert line.startswith("generating video: 1.50 GB of ~4.00 GB (38 %), 1,250 of 4,000 frames")
    assert "MB/s" in line and "left; cam001 25 %, cam002 encoding its pool" in line


def test_video_size_from_ram_is_whole_frames(tmp_path: Path) -> None:
    from harness.data.generate import resolve_size

    params = _video(frames=None, size="5x-ram", bitrate_kbps=1000, videos=2)
    resolved, unit, exact = resolve_size("video", params, Clients(10**9, 2))
    assert not exact and unit == pytest.approx(1000e3 / 8 / 25)
    assert resolved.frames == count_for(10 * 10**9, unit, 2) and resolved.size == "5x-ram"
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_run_summary_carries_the_measured_repetition() -> None:
    from harness.summary import storage_metrics

    repeated = {"distinct_block_share": 0.5, "compression_ratio": 1.25}
    metrics = storage_metrics({"total_bytes": 10, "repetition": repeated}, None)
    assert metrics["distinct_block_pct"] == {"value": 50.0, "unit": "%", "direction": "context"}
    assert metrics["zstd_ratio"]["value"] == 1.25
    assert "zstd_ratio" not in storage_metrics({"total_bytes": 10}, None)  # older datasets
