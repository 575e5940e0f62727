"""Real-world brought data, in process: every image mode read as RGB as it is shown, masks checked
at index time from headers and on first read, awkward videos indexed and read, sample failures one
line each. The end-to-end run of the same folders on a read-only mount is at the end (slow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from awkward_data import (
    CLASSES,
    HEIGHT,
    IMAGE_MODES,
    WIDTH,
    reference_rgb,
    write_image_folder,
    write_video_folder,
)
from conftest import byo_index, run_harness, tiny_collage_scenario, tiny_video_scenario
from PIL import Image

from harness.data.byo import index_dataset
from harness.data.pictures import decode_mask, decode_rgb
from harness.data.video_reader import VideoReader
from harness.errors import HarnessError
from harness.pipeline.plan import SamplePlan, SampleRef
from harness.pipeline.sources import CollageSource, DecodedVideoSource
from harness.pipeline.torch_loader import SegmentationSamples
from harness.scenario import ImageCollageDataset, VideoDataset

CROP = 16


def _image_dataset(folder: Path, **extra) -> ImageCollageDataset:
    return ImageCollageDataset(kind="image_collage", path=str(folder), classes=CLASSES, **extra)


def _video_dataset(folder: Path) -> VideoDataset:
    return VideoDataset(kind="video", path=str(folder), classes=CLASSES, label_rule="luma_bins")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("awkward") / "photos"
    write_image_folder(folder)
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("awkward") / "videos"
    write_video_folder(folder)
    return folder


def test_every_image_mode_reads_as_rgb_as_shown(photos: Path) -> None:
    for index, (mode, name) in enumerate(IMAGE_MODES.items()):
        path = photos / "images" / name
        rgb = decode_rgb(path.read_bytes(), path)
        assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8, (mode, rgb.shape)
        reference = reference_rgb(index)
        gray = np.asarray(Image.fromarray(reference).convert("L"))
        if mode in ("L", "LA", "I;16", "I", "F"):
            np.testing.assert_array_equal(rgb, np.repeat(gray[:, :, None], 3, axis=2), mode)
        elif mode in ("RGBA",):
            np.testing.assert_array_equal(rgb, reference)
        elif mode in ("RGB", "CMYK"):  # JPEG: close, not equal; turned upright by EXIF
            assert np.abs(rgb.astype(int) - reference).mean() < 40, mode
        elif mode == "1":
            assert set(np.unique(rgb)) <= {0, 255}
    turned = photos / "images/turned.jpg"
    upright = decode_rgb(turned.read_bytes(), turned)
    sideways = np.asarray(Image.open(turned))
    assert sideways.shape == (WIDTH, HEIGHT, 3)  # stored turned; shown upright
    assert (
        np.abs(upright.astype(int) - reference_rgb(9)).mean()
        < np.abs(np.rot90(sideways, 1).astype(int) - reference_rgb(9)).mean()
    )


def test_modes_made_in_memory_read_too() -> None:
    from harness.data.pictures import _rgb

    base = Image.fromarray(reference_rgb(0))
    for mode in ("PA", "La", "RGBa", "RGBX", "YCbCr", "HSV", "LAB"):
        picture = base.convert("LA").convert(mode) if mode == "La" else base.convert(mode)
        rgb = _rgb(picture, Path("memory"))
        assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8, mode


def test_masks_of_every_single_channel_mode_keep_their_ids(photos: Path) -> None:
    for path in sorted((photos / "masks").iterdir()):
        ids = decode_mask(path.read_bytes(), path)
        assert ids.shape == (HEIGHT, WIDTH) and int(ids.max()) < CLASSES, path.name


def test_index_reads_headers_and_records_modes(
    photos: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    def decoded(*_args: object) -> None:
        raise AssertionError("indexing decoded pixels")

    with monkeypatch.context() as patch:  # headers only: no picture is decoded
        patch.setattr(ImageFile.ImageFile, "load", decoded)
        patch.setattr(Image.Image, "load", decoded)
        manifest = index_dataset(_image_dataset(photos), min_side=CROP)
    modes = {Path(r["path"]).name: r["mode"] for r in manifest["files"]}
    assert modes == {name: mode for mode, name in IMAGE_MODES.items()}
    assert all((r["width"], r["height"]) == (WIDTH, HEIGHT) for r in manifest["files"])
    assert {r["mask_mode"] for r in manifest["files"]} == {"L", "P", "I;16", "1"}
    assert byo_index(index_dir)["fingerprint"] == manifest["fingerprint"]
    assert not (photos / "dataset.json").exists()
    again = index_dataset(_image_dataset(photos), min_side=CROP)
    assert again == manifest  # unchanged content: the index is reused


def test_a_run_finds_the_index_by_path_and_content(tmp_path: Path, index_dir: Path) -> None:
    from harness.data.index import dataset_manifest

    folder = tmp_path / "photos"
    write_image_folder(folder)
    dataset = _image_dataset(folder)
    with pytest.raises(HarnessError, match=r"photos is not indexed \(indexes: .*\): index it with"):
        dataset_manifest(dataset, "s.yaml")
    indexed = index_dataset(dataset, min_side=CROP)
    assert dataset_manifest(dataset) == indexed
    (folder / "masks/gray.png").write_bytes((folder / "masks/rgba.png").read_bytes())
    with pytest.raises(HarnessError, match=r"photos has changed since it was indexed"):
        dataset_manifest(dataset)  # a mask changed: the index no longer describes the data
    legacy = {**indexed, "fingerprint": "from-an-older-harness"}
    (folder / "dataset.json").write_text(json.dumps(legacy))
    assert dataset_manifest(dataset) == legacy  # an older harness's index inside is still read


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("rgb mask", "masks/gray.png: mask is mode RGB, expected one channel of class ids"),
        ("small mask", "masks/gray.png: mask is 20x48, its image gray.png is 40x48"),
        ("not an image", "images/gray.png: unreadable image: UnidentifiedImageError"),
        ("truncated", "images/gray.png: corrupt or truncated image: no PNG end marker"),
    ],
)
def test_index_names_each_problem(tmp_path: Path, damage: str, expected: str) -> None:
    folder = tmp_path / "photos"
    write_image_folder(folder)
    image, mask = folder / "images/gray.png", folder / "masks/gray.png"
    if damage == "rgb mask":
        Image.new("RGB", (WIDTH, HEIGHT)).save(mask)
    elif damage == "small mask":
        Image.new("L", (WIDTH // 2, HEIGHT)).save(mask)
    elif damage == "not an image":
        image.write_bytes(b"\x00" * 300)
    else:
        image.write_bytes(image.read_bytes()[:-200])
    with pytest.raises(HarnessError) as error:
        index_dataset(_image_dataset(folder), min_side=CROP)
    assert str(error.value) == f"{folder}/{expected}" or str(error.value).startswith(
        f"{folder}/{expected}"
    ), str(error.value)


def _samples(folder: Path, on_corrupt: str, classes: int = CLASSES) -> SegmentationSamples:
    manifest = index_dataset(_image_dataset(folder), min_side=CROP)
    manifest = {**manifest, "classes": classes}
    source = CollageSource(folder, manifest)
    plan = SamplePlan(source.files, CROP, 0, shuffle=False)
    return SegmentationSamples(source, plan, CROP, on_corrupt)


def test_every_image_is_read_through_the_torch_source(photos: Path) -> None:
    samples = _samples(photos, "fail")
    for file in range(len(IMAGE_MODES)):
        image, mask, _reads = samples.source.load(SampleRef(file, 0, 0, 0), CROP)
        assert image.shape == (CROP, CROP, 3) and mask.shape == (CROP, CROP)
        assert mask.dtype == np.uint8
    sample = samples[0]
    assert sample.fatal is None and tuple(sample.image.shape) == (3, CROP, CROP)


def test_mask_ids_out_of_range_are_named_on_read(photos: Path) -> None:
    samples = _samples(photos, "fail", classes=2)
    assert samples[1].fatal is None  # in order: sample n is file n; cmyk's mask holds 0 and 1
    file, message = samples[0].fatal  # bilevel's mask holds 0 to 3
    assert file.endswith("images/bilevel.png")  # the sample's file; the message names the mask
    assert "masks/bilevel.png: mask value" in message and "dataset.classes is 2" in message
    assert "\n" not in message


def test_any_sample_failure_is_one_line_and_skip_goes_on(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = _samples(photos, "skip")
    # A library error that is not an OSError: Pillow's decompression-bomb guard.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    sample = samples[0]
    assert sample.fatal is not None  # every replacement fails alike: given up, named
    assert len(sample.errors) == 16
    file, message = sample.errors[0]
    assert file.endswith("images/bilevel.png")
    assert message.startswith("DecompressionBombError: Image size (1920 pixels) exceeds limit")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**8)
    assert samples[0].fatal is None


def test_video_failure_names_the_frame(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    write_video_folder(folder)
    manifest = index_dataset(_video_dataset(folder), min_side=CROP)
    video = folder / "odd_sides.mkv"  # cut short after indexing: its last frames are gone
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    source = DecodedVideoSource(folder, manifest, 1)
    samples = SegmentationSamples(source, SamplePlan(source.files, CROP, 0, False), CROP, "fail")
    assert samples[1].fatal is None  # in order: sample n is frame n of the first video
    file, message = samples[20].fatal
    assert file == str(video) and message.startswith("frame 20: "), message
    assert "\n" not in message


def test_mask_video_ids_out_of_range_are_named_on_read(tmp_path: Path) -> None:
    import av

    folder = tmp_path / "videos"
    write_video_folder(folder)
    for name in ("odd_sides.mkv", "phone.mp4", "variable_rate.mp4"):
        (folder / name).unlink()
    with av.open(str(folder / "two_streams.mask.mkv"), "w") as container:  # ids 0..5, 4 classes
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gray"
        for index in range(24):
            ids = np.full((48, 64), index % 6, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(ids, format="gray")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    dataset = VideoDataset(kind="video", path=str(folder), classes=CLASSES)
    source = DecodedVideoSource(folder, index_dataset(dataset, min_side=CROP), 1)
    image = np.zeros((48, 64, 3), np.uint8)
    assert int(source.mask(0, 3, image).max()) == 3
    with pytest.raises(HarnessError, match=r"two_streams.mask.mkv: mask value 5 .* ids run 0..3"):
        source.mask(0, 5, image)


def test_awkward_videos_are_indexed_and_read(videos: Path) -> None:
    manifest = index_dataset(_video_dataset(videos), min_side=CROP)
    records = {r["path"]: r for r in manifest["files"]}
    assert (records["odd_sides.mkv"]["width"], records["odd_sides.mkv"]["height"]) == (41, 35)
    assert records["phone.mp4"]["rotation"] == -90
    assert (records["phone.mp4"]["width"], records["phone.mp4"]["height"]) == (48, 64)
    assert records["two_streams.mkv"]["video_streams"] == 2
    assert len(records["variable_rate.mp4"]["pts"]) == 24
    assert 6 < records["variable_rate.mp4"]["fps"] < 10
    assert all(r["frames"] == 24 for r in records.values())
    for record in records.values():
        with VideoReader(videos / record["path"], timestamps=record.get("pts")) as reader:
            frames = list(reader.frames())
        assert [index for index, _ in frames] == list(range(24)), record["path"]
        assert frames[0][1].shape == (record["height"], record["width"], 3)
        with VideoReader(videos / record["path"], timestamps=record.get("pts")) as reader:
            np.testing.assert_array_equal(reader.read(17), frames[17][1])  # seek finds it


def test_dali_refuses_what_it_would_read_wrongly(photos: Path) -> None:
    from harness.pipeline.dali_backend import check_scenario

    manifest = index_dataset(_image_dataset(photos), min_side=CROP)
    int32 = [r for r in manifest["files"] if r["mode"] == "I"]
    with pytest.raises(HarnessError, match=r"int32.tif: backend dali cannot decode I "):
        check_scenario(CollageSource(photos, {**manifest, "files": int32}), use_cuda=False)
    records = [r for r in manifest["files"] if r["mode"] != "I"]
    with pytest.raises(HarnessError, match=r"mode (P|I;16|1) mask; use pipeline.backend torch"):
        check_scenario(CollageSource(photos, {**manifest, "files": records}), use_cuda=False)
    plain = [r for r in records if r["mask_mode"] == "L"]
    check_scenario(CollageSource(photos, {**manifest, "files": plain}), use_cuda=False)


def test_gray_npy_images_read_as_rgb_and_dali_refuses_them(tmp_path: Path) -> None:
    from harness.pipeline.dali_backend import check_scenario

    folder = tmp_path / "arrays"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    gray = np.asarray(Image.fromarray(reference_rgb(0)).convert("L"))
    np.save(folder / "images/gray.npy", gray)
    np.save(folder / "masks/gray.npy", np.zeros((HEIGHT, WIDTH), np.uint8))
    manifest = index_dataset(_image_dataset(folder), min_side=CROP)
    assert (manifest["files"][0]["mode"], manifest["files"][0]["mask_mode"]) == ("npy:1", "npy:1")
    image, _mask, _reads = CollageSource(folder, manifest).load(SampleRef(0, 0, 0, 0), CROP)
    np.testing.assert_array_equal(image, np.repeat(gray[:CROP, :CROP, None], 3, axis=2))
    with pytest.raises(HarnessError, match=r"gray.npy: backend dali reads npy images of 3 chan"):
        check_scenario(CollageSource(folder, manifest), use_cuda=False)


def test_gpu_video_backends_refuse_turned_and_variable_rate_videos(videos: Path) -> None:
    from harness.pipeline import dali_backend, nvdec_backend

    manifest = index_dataset(_video_dataset(videos), min_side=CROP)
    for name in ("phone.mp4", "variable_rate.mp4"):
        records = [r for r in manifest["files"] if r["path"] == name]
        source = DecodedVideoSource(videos, {**manifest, "files": records}, 1)
        for backend in (dali_backend, nvdec_backend):
            with pytest.raises(HarnessError, match=rf"{name}: backend \w+ cannot read a video"):
                backend.check_scenario(source, use_cuda=True)


@pytest.mark.slow
def test_dali_decodes_every_mode_it_accepts_as_the_torch_backend_does(photos: Path) -> None:
    """The decoder operator the DALI backend uses, on DALI's CPU (device_id None): RGB, EXIF
    orientation applied, equal to ``decode_rgb`` for every mode it is not refused."""
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install .[dev])")
    from nvidia.dali import fn, pipeline_def, types

    from harness.pipeline.dali_backend import DALI_IMAGE_MODES_REFUSED

    files = [photos / "images" / name for mode, name in IMAGE_MODES.items()]
    files = [
        f
        for f, mode in zip(files, IMAGE_MODES, strict=True)
        if mode not in DALI_IMAGE_MODES_REFUSED
    ]

    @pipeline_def(batch_size=len(files), num_threads=1, device_id=None)
    def pipeline():
        encoded, _ = fn.readers.file(files=[str(f) for f in files])
        return fn.decoders.image(encoded, device="cpu", output_type=types.RGB)

    decoder = pipeline()
    decoder.build()
    (decoded,) = decoder.run()
    for index, path in enumerate(files):
        dali = np.asarray(decoded[index]).astype(int)
        torch_backend = decode_rgb(path.read_bytes(), path).astype(int)
        assert dali.shape == torch_backend.shape, path.name
        # Lossless files alike to the bit; JPEG decoders may round an IDCT differently.
        tolerance = 2 if path.suffix == ".jpg" else 0
        assert np.abs(dali - torch_backend).max() <= tolerance, path.name


@pytest.mark.slow
def test_awkward_folders_run_end_to_end_from_a_read_only_mount(
    tmp_path: Path, write_scenario, cli
) -> None:
    """Every image mode and awkward video, brought on a read-only bind mount (root: a permission
    bit would not stop root), indexed, then run with a cold page cache; one corrupt image is
    skipped and counted under on_corrupt: skip."""
    data = tmp_path / "data"
    write_image_folder(data / "photos")
    write_video_folder(data / "videos")
    damaged = data / "photos/images/gray.png"  # pixels broken, header and end marker intact
    raw = bytearray(damaged.read_bytes())
    start = raw.find(b"IDAT") + 4
    raw[start : start + 2] = b"\x00\x00"  # the compressed pixels' zlib header
    damaged.write_bytes(bytes(raw))
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(data), str(mount)]).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        with pytest.raises(OSError):
            (mount / "probe").write_bytes(b"")
        training = {"steps": 3, "warmup_steps": 1, "device": "cpu", "eval_samples": 4,
                    "model": {"width": 4, "depth": 2}}  # fmt: skip
        images = tiny_collage_scenario(tmp_path, name="awkward-images", training=training)
        images["dataset"] = {"kind": "image_collage", "path": str(mount / "photos"), "classes": 4}
        images["pipeline"] = {
            "crop": CROP,
            "batch_size": 4,
            "workers": 1,
            "on_corrupt": "skip",
            "shuffle": False,  # in order: every file is read
        }
        videos = tiny_video_scenario(tmp_path, name="awkward-videos", training=training)
        videos["dataset"] = {"kind": "video", "path": str(mount / "videos"), "classes": 4,
                             "label_rule": "luma_bins"}  # fmt: skip
        videos["pipeline"] = {"crop": CROP, "batch_size": 4, "workers": 1, "mode": "decoded"}
        files = [str(write_scenario(images, "i.yaml")), str(write_scenario(videos, "v.yaml"))]
        index = tmp_path / "state"
        done = cli("datagen", *files, "--index-dir", index)  # in process: saves a start-up
        assert done.returncode == 0, done.stderr
        assert "2 video streams; the first is read" in done.stdout
        results = tmp_path / "results"
        done = run_harness("run", *files, "--index-dir", str(index), "--results", str(results))
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert len(list(index.glob("*/*.json"))) == 2 and not list(data.rglob("dataset.json"))
    summaries = [json.loads((f / "summary.json").read_text()) for f in sorted(results.iterdir())]
    assert [s["complete"] for s in summaries] == [True, True]
    assert all(s["page_cache"]["condition"] == "cold" for s in summaries)
    images_summary = next(s for s in summaries if "awkward-images" in json.dumps(s["scenario"]))
    assert list(images_summary["corrupt_files"]) == [str(mount / "photos/images/gray.png")]
    message = images_summary["corrupt_samples"][0]["error"]
    assert "corrupt or truncated image" in message and "\n" not in message
