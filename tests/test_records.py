"""Records datasets (MLPerf Storage's workloads): generated files parsed back independently, the
reader's bytes and CRC checks, the scenarios, and tiny slices of two workloads end to end."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.data import records, tfrecord
from harness.errors import HarnessError
from harness.pipeline.plan import RecordPlan
from harness.pipeline.sources import RecordsSource
from harness.scenario import RecordsGenerate, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _crc32c(data: bytes) -> int:
    """CRC32C bit by bit (Castagnoli, reflected 0x82F63B78): independent of the crc32c package."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _make(tmp_path: Path, **settings: object) -> tuple[RecordsGenerate, list[Path]]:
    params = RecordsGenerate(**settings)  # type: ignore[arg-type]
    for index in range(records.job_count(params)):
        records.make(str(tmp_path), params, index)
    return params, [tmp_path / records.file_name(i, params) for i in range(params.files or 0)]


def test_tfrecord_framing_parses_with_an_independent_crc(tmp_path: Path) -> None:
    params, paths = _make(tmp_path, files=2, records_per_file=3, record_bytes=50, format="tfrecord")
    for index, path in enumerate(paths):
        data, at, found = path.read_bytes(), 0, 0
        while at < len(data):
            length = struct.unpack("<Q", data[at : at + 8])[0]
            assert struct.unpack("<I", data[at + 8 : at + 12])[0] == _masked(data[at : at + 8])
            body = data[at + 12 : at + 12 + length]
            crc = struct.unpack("<I", data[at + 12 + length : at + 16 + length])[0]
            assert crc == _masked(body) and length == records.record_bytes(params, index)
            at, found = at + 16 + length, found + 1
        assert found == 3


def test_npz_loads_with_numpy_and_sizes_follow_the_seeded_normal(tmp_path: Path) -> None:
    params, paths = _make(
        tmp_path, files=6, records_per_file=2, record_bytes=3000, record_bytes_stdev=800
    )
    sizes = []
    for index, path in enumerate(paths):
        with np.load(path) as archive:
            x, y = archive["x"], archive["y"]
        assert x.dtype == np.uint8 and x.shape == (records.record_bytes(params, index), 2)
        assert y.tolist() == [0, 0]
        sizes.append(x.shape[0])
    assert len(set(sizes)) > 1  # drawn, not constant
    assert sizes == [records.record_bytes(params, i) for i in range(6)]  # the same seed, again


def test_jpeg_files_hold_one_record_of_random_bytes(tmp_path: Path) -> None:
    _, paths = _make(tmp_path, files=2, record_bytes=4096, format="jpeg")
    data = paths[0].read_bytes()
    assert len(data) == 4096 and data != paths[1].read_bytes()
    assert len(zlib.compress(data)) > 4000  # incompressible


def _source(tmp_path: Path, params: RecordsGenerate) -> RecordsSource:
    manifest = {"files": records.describe(tmp_path, params), "labels": "none", "classes": 1}
    manifest["params"] = params.model_dump(mode="json")
    return RecordsSource(tmp_path, manifest)  # type: ignore[arg-type]


def test_reader_reads_tfrecords_one_by_one_and_counts_their_bytes(tmp_path: Path) -> None:
    params, _ = _make(tmp_path, files=2, records_per_file=4, record_bytes=100, format="tfrecord")
    source = _source(tmp_path, params)
    plan = RecordPlan(source.files, seed=1, shuffle=True)
    refs = [plan.train(n) for n in range(8)]
    assert sorted((r.file, r.frame) for r in refs) == [(f, k) for f in range(2) for k in range(4)]
    assert [r.frame for r in refs[:4]] == [0, 1, 2, 3]  # a file's records in sequence
    requested = 0
    for ref in refs:
        image, mask, reads = source.load(ref, 8)
        assert image.shape == (8, 8, 3) and mask.shape == (8, 8) and not image.any()
        requested += reads.requested
    assert requested == 8 * tfrecord.framed_bytes(100)  # every byte of both files, once


def test_reader_names_a_corrupt_record(tmp_path: Path) -> None:
    params, paths = _make(
        tmp_path, files=1, records_per_file=2, record_bytes=100, format="tfrecord"
    )
    data = bytearray(paths[0].read_bytes())
    data[20] ^= 0xFF  # inside the first record's data
    paths[0].write_bytes(bytes(data))
    source = _source(tmp_path, params)
    with pytest.raises(HarnessError, match="fails its CRC"):
        source.load(RecordPlan(source.files, 0, False).train(0), 8)


def test_mlperf_scenarios_validate() -> None:
    files = sorted((ROOT / "scenarios" / "mlperf").glob("*.yaml"))
    assert len(files) >= 4
    result = subprocess.run(
        [sys.executable, "-m", "harness", "validate", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_records_refuse_a_real_model() -> None:
    with pytest.raises(Exception, match=r"training\.compute emulated"):
        load_scenario(ROOT / "scenarios" / "mlperf" / "unet3d_h100.yaml", ["training.compute=real"])


TINY = [
    "-o", "dataset.generate.size=null", "-o", "training.duration_s=null",
    "-o", "training.steps=3", "-o", "training.warmup_steps=1", "-o", "pipeline.workers=1",
    "-o", "collectors.enabled=[io,latency]",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "shrink"),
    [
        ("unet3d_h100", ["dataset.generate.files=8", "dataset.generate.record_bytes=20000"]),
        (
            "resnet50_h100",
            [
                "dataset.generate.files=2",
                "dataset.generate.records_per_file=300",
                "dataset.generate.record_bytes=1000",
            ],
        ),
    ],
)
def test_tiny_slice_runs(tmp_path: Path, name: str, shrink: list[str]) -> None:
    args = [*TINY, "-o", f"dataset.path={tmp_path / 'data'}"]
    for item in shrink:
        args += ["-o", item]
    scenario = str(ROOT / "scenarios" / "mlperf" / f"{name}.yaml")
    for command in (["datagen", scenario], ["run", scenario, "--results", str(tmp_path / "r")]):
        result = subprocess.run(
            [sys.executable, "-m", "harness", *command, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "bytes first requested (pipeline): agree" in result.stdout
