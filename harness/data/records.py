"""Records datasets: files of records of random bytes, as DLIO generates MLPerf Storage's training
workloads (docs/mlperf.md).

Layout of a records dataset folder::

    dataset.json
    records/rec_00000000.npz | .tfrecord | .jpg

Each file's record size is drawn from a normal distribution (``record_bytes``,
``record_bytes_stdev``, seeded by the file's index), clipped at 1 byte: one size per file, as
DLIO's generators draw it. The bytes are random (incompressible), so that storage that compresses
or deduplicates gains nothing a real dataset would not give it.

- ``npz``: ``numpy.savez`` (stored, not compressed) of ``x``, uint8 of shape (record bytes,
  records), and ``y``, the records' labels (int64 zeros), as DLIO's NPZ generator writes unet3d
  (its ``x`` is (side, side, records) of about the same bytes); a reader loads the whole file.
- ``tfrecord``: the records in TFRecord framing (``harness.data.tfrecord``) around raw bytes:
  DLIO wraps them in a ``tf.train.Example``, which MLPerf Storage's reader never decodes.
- ``jpeg``: one record of raw bytes per ``.jpg`` file, read whole and never decoded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from harness.data import tfrecord
from harness.data.manifest import FileRecord
from harness.files import atomic_write
from harness.scenario import RecordsGenerate

GENERATOR_VERSION = 1
SUFFIX = {"npz": ".npz", "tfrecord": ".tfrecord", "jpeg": ".jpg"}
CHUNK = 64 * 2**20  # random bytes drawn at a time: memory stays flat whatever the record size


def file_name(index: int, params: RecordsGenerate) -> str:
    return f"records/rec_{index:08d}{SUFFIX[params.format]}"


def outputs(params: RecordsGenerate, index: int) -> tuple[str, ...]:
    return (file_name(index, params),)


def job_count(params: RecordsGenerate) -> int:
    assert params.files is not None, "the file count is resolved before generation"
    return params.files


def record_bytes(params: RecordsGenerate, index: int) -> int:
    """The size of every record of file ``index``: drawn from the normal distribution, seeded."""
    if params.record_bytes_stdev == 0:
        return max(1, round(params.record_bytes))
    rng = np.random.default_rng([params.seed, index, 0x5EC])
    return max(1, round(float(rng.normal(params.record_bytes, params.record_bytes_stdev))))


def unit_bytes(params: RecordsGenerate) -> tuple[float, bool]:
    """Mean bytes one file takes on disk (``size: 5x-ram`` counts files with it); not exact when
    sizes are drawn or the format adds a container."""
    data = params.record_bytes * params.records_per_file
    if params.format == "tfrecord":
        data += (tfrecord.HEADER_BYTES + tfrecord.FOOTER_BYTES) * params.records_per_file
    elif params.format == "npz":
        data += 1024 + 8 * params.records_per_file  # zip entries, npy headers, labels
    return float(data), params.format == "jpeg" and params.record_bytes_stdev == 0


def prepare(params: RecordsGenerate) -> None:
    """Nothing shared to build before the workers fork."""


def _random_bytes(rng: np.random.Generator, count: int) -> bytes:
    return b"".join(rng.bytes(min(CHUNK, count - at)) for at in range(0, count, CHUNK))


def make(root: str, params: RecordsGenerate, index: int, threads: int = 1) -> None:
    """Write file ``index`` atomically."""
    size = record_bytes(params, index)
    rng = np.random.default_rng([params.seed, index])
    path = Path(root) / file_name(index, params)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        if params.format == "npz":
            records = np.frombuffer(_random_bytes(rng, size * params.records_per_file), np.uint8)
            labels = np.zeros(params.records_per_file, dtype=np.int64)
            np.savez(handle, x=records.reshape(params.records_per_file, size).T, y=labels)
        elif params.format == "tfrecord":
            for _ in range(params.records_per_file):
                handle.write(tfrecord.frame(_random_bytes(rng, size)))
        else:
            handle.write(_random_bytes(rng, size))


def describe(root: Path, params: RecordsGenerate) -> list[FileRecord]:
    """The manifest records of every file, from what is on disk."""
    files: list[FileRecord] = []
    for index in range(job_count(params)):
        name = file_name(index, params)
        files.append(
            {
                "path": name,
                "bytes": (root / name).stat().st_size,
                "records": params.records_per_file,
                "record_bytes": record_bytes(params, index),
            }
        )
    return files


def npz_records(data: bytes) -> np.ndarray:
    """The ``x`` array of an npz file's bytes (tests and checks; a run never decodes)."""
    with np.load(io.BytesIO(data)) as archive:
        return np.asarray(archive["x"])
