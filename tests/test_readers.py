"""The torch backend's read path: whole files read ahead by I/O threads, .npy bytes parsed by a
header cache, batches leaving workers inline or in shared memory. Fast: tiny files on disk, one
real DataLoader worker."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from harness.errors import HarnessError
from harness.pipeline.batch import INLINE_PIXEL_BYTES, Batch
from harness.pipeline.plan import SamplePlan, SampleRef
from harness.pipeline.sources import CollageSource, _array_from_npy_bytes
from harness.pipeline.torch_loader import RankSampler, SegmentationSamples


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.arange(35, dtype=np.uint16).reshape(5, 7),
        np.zeros((0, 3), dtype=np.float32),
        np.float64(2.5),
    ],
    ids=["hwc-uint8", "2d-uint16", "empty", "scalar"],
)
def test_npy_bytes_parse_as_numpy_does_twice_over(array: np.ndarray) -> None:
    data = npy_bytes(np.asarray(array))
    for _ in range(2):  # the second parse comes from the header cache
        parsed = _array_from_npy_bytes(data, Path("a.npy"))
        assert parsed.shape == np.shape(array) and parsed.dtype == np.asarray(array).dtype
        assert np.array_equal(parsed, array)


def test_broken_npy_bytes_are_one_line_naming_the_file() -> None:
    data = npy_bytes(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(HarnessError) as caught:
        _array_from_npy_bytes(data[:-1], Path("cam/f.npy"))
    assert (
        str(caught.value)
        == f"cam/f.npy: truncated: {len(data) - 1} bytes, the header says {len(data)}"
    )
    for broken, why in (
        (data[:9], "not a .npy file"),
        (b"PNG" + data, "not a .npy file"),
        (data[:20], "truncated header"),
    ):
        with pytest.raises(HarnessError, match=r"^cam/f\.npy: corrupt array: .*") as caught:
            _array_from_npy_bytes(broken, Path("cam/f.npy"))
        assert why in str(caught.value) and "\n" not in str(caught.value)


def test_small_batches_leave_a_worker_inline_and_large_ones_in_shared_memory() -> None:
    crop = 16
    small = Batch.untimed(
        torch.arange(2 * 3 * crop * crop, dtype=torch.int64).to(torch.uint8).view(2, 3, crop, crop),
        torch.ones(2, crop, crop, dtype=torch.uint8),
        end_ns=1,
    )
    state = small.__getstate__()
    assert isinstance(state["image"], np.ndarray) and isinstance(state["mask"], np.ndarray)
    back = pickle.loads(pickle.dumps(small))
    assert torch.equal(back.image, small.image) and torch.equal(back.mask, small.mask)
    side = int((INLINE_PIXEL_BYTES / 4) ** 0.5) + 1  # image + mask just over the limit
    large = Batch.untimed(
        torch.zeros(1, 3, side, side, dtype=torch.uint8),
        torch.zeros(1, side, side, dtype=torch.uint8),
        end_ns=1,
    )
    assert isinstance(large.__getstate__()["image"], torch.Tensor)


@pytest.fixture
def png_collage(tmp_path: Path) -> CollageSource:
    """Three PNG images with PNG masks: files a sample reads whole."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(3):
        image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
        mask = rng.integers(0, 5, (64, 48), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"img{index}.png")
        Image.fromarray(mask).save(tmp_path / f"img{index}.mask.png")
        records.append(
            {"path": f"img{index}.png", "mask": f"img{index}.mask.png", "width": 48, "height": 64}
        )
    manifest = {"files": records, "labels": "masks", "classes": 5}
    return CollageSource(tmp_path, manifest)


def batches(source: CollageSource, read_threads: int, workers: int) -> list[Batch]:
    source = pickle.loads(pickle.dumps(source))  # as a run starts: nothing open, nothing read
    plan = SamplePlan(source.files, crop=16, seed=3, shuffle=True)
    dataset = SegmentationSamples(source, plan, 16, "fail", read_threads=read_threads)
    loader = DataLoader(
        dataset,
        batch_size=6,
        sampler=RankSampler(0, 1, 6, steps=3),
        num_workers=workers,
        collate_fn=Batch.collate,
        multiprocessing_context="fork" if workers else None,
    )
    return list(loader)


def test_read_ahead_threads_give_the_same_samples_and_bytes(png_collage: CollageSource) -> None:
    plain = batches(png_collage, read_threads=1, workers=0)
    ahead = batches(png_collage, read_threads=3, workers=1)  # threads made in the worker
    for one, other in zip(plain, ahead, strict=True):
        assert torch.equal(one.image, other.image) and torch.equal(one.mask, other.mask)
        assert np.array_equal(one.requested_bytes, other.requested_bytes)
        assert np.array_equal(one.first_time_bytes, other.first_time_bytes)
        assert (other.latency_ns > 0).all() and not other.errors
    plan = SamplePlan(png_collage.files, crop=16, seed=3, shuffle=True)
    sizes = [
        sum((png_collage.root / name).stat().st_size for name in (r["path"], r["mask"]))
        for r in png_collage.records
    ]
    expected = [sizes[plan.train(number).file] for number in range(18)]
    assert np.concatenate([b.requested_bytes for b in ahead]).tolist() == expected


def test_read_ahead_reports_a_missing_file_as_a_plain_read_does(
    png_collage: CollageSource,
) -> None:
    (png_collage.root / "img1.mask.png").unlink()
    for threads in (1, 3):
        plan = SamplePlan(png_collage.files, crop=16, seed=3, shuffle=True)
        dataset = SegmentationSamples(png_collage, plan, 16, "skip", read_threads=threads)
        samples = dataset.__getitems__(list(range(12)))
        errors = [error for sample in samples for error in sample.errors]
        assert errors and all("img1.png" in file for file, _ in errors)
        assert all("No such file" in message for _, message in errors)
        assert all(sample.fatal is None for sample in samples)


@pytest.fixture
def npy_collage(tmp_path: Path) -> CollageSource:
    """Two memory-mapped .npy images of 256x256 with .npy masks."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(2):
        np.save(tmp_path / f"img{index}.npy", rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        np.save(tmp_path / f"img{index}.mask.npy", rng.integers(0, 5, (256, 256), dtype=np.uint8))
        records.append(
            {"path": f"img{index}.npy", "mask": f"img{index}.mask.npy", "width": 256, "height": 256}
        )
    return CollageSource(tmp_path, {"files": records, "labels": "masks", "classes": 5})


def _cut(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:  # in place: the same file, as a mapping of it sees
        handle.truncate(size)


def test_a_mapped_npy_cut_during_a_run_is_named_not_a_bus_error(npy_collage: CollageSource) -> None:
    """A page past a cut file's end is a SIGBUS: the worker would die unnamed ("out of shared
    memory"). Each crop checks the file first: one line naming it, the run going on under skip."""
    image = npy_collage.root / "img1.npy"
    whole = image.stat().st_size
    source = pickle.loads(pickle.dumps(npy_collage))
    plan = SamplePlan(source.files, crop=16, seed=3, shuffle=True)
    dataset = SegmentationSamples(source, plan, 16, "skip")
    loader = DataLoader(
        dataset,
        batch_size=6,
        sampler=RankSampler(0, 1, 6, steps=12),
        num_workers=1,
        collate_fn=Batch.collate,
        multiprocessing_context="fork",
        prefetch_factor=1,
    )
    batches = []
    for batch in loader:  # both files mapped by the worker in the first batches, then one cut
        batches.append(batch)
        if len(batches) == 3:
            _cut(image, 4096)
    errors = [error for batch in batches[5:] for error in batch.errors]
    assert errors and all(batch.fatal is None for batch in batches)
    assert set(errors) == {(str(image), f"truncated: 4096 bytes, the header says {whole}")}
    with pytest.raises(HarnessError) as caught:  # cut before it is mapped: named alike
        pickle.loads(pickle.dumps(npy_collage)).load(SampleRef(1, 0, 0, 0), 16)
    assert str(caught.value) == f"{image}: truncated: 4096 bytes, the header says {whole}"
