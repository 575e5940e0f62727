"""What repetition in a dataset a storage system could exploit: deduplication and compression.

Storage with inline deduplication or compression (the study's array had both) can serve repeated
blocks from its own cache and so flatter a result. After generating, the harness reads a sample of
the dataset (chunks spread evenly over every file) and records:

- the share of distinct 4 KiB blocks (blocks at 4 KiB-aligned file offsets, as fixed-block
  deduplication sees them; 1.0 means no two blocks of the sample are equal);
- the zstd compression ratio of the sample (raw bytes / compressed bytes, level 3, the kind of fast
  compression arrays do inline), compressed in independent 128 KiB records as a filesystem or
  array compresses its records, not as one stream that could find repeats megabytes apart.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from harness.data.manifest import Repetition
from harness.data.sizing import human_bytes

BLOCK = 4096
CHUNK = 2**20  # bytes read at each sampled position
SAMPLE_BYTES = 64 * 2**20  # default sample: at most this much of the dataset
ZSTD_LEVEL = 3
RECORD = 128 * 2**10  # compression unit (ZFS's default record size)


def sample_chunks(paths: Sequence[Path], budget: int = SAMPLE_BYTES) -> list[tuple[Path, int]]:
    """(file, offset) of the chunks to read: all of every file when the dataset fits the budget,
    else chunks spread evenly over the files and within each (4 KiB-aligned offsets)."""
    sizes = [(path, os.path.getsize(path)) for path in paths]
    sizes = [(path, size) for path, size in sizes if size]
    total = sum(size for _path, size in sizes)
    if total <= budget:
        return [(path, offset) for path, size in sizes for offset in range(0, size, CHUNK)]
    allowed = max(1, budget // CHUNK)
    if len(sizes) > allowed:  # more files than chunks: an even subset of the files
        sizes = [sizes[k * len(sizes) // allowed] for k in range(allowed)]
        total = sum(size for _path, size in sizes)
    fraction = budget / total
    chunks = []
    for path, size in sizes:
        count = max(1, round(size * fraction / CHUNK))
        span = max(0, size - CHUNK)
        chunks += [(path, span * k // max(1, count - 1) // BLOCK * BLOCK) for k in range(count)]
    return chunks


def measure(paths: Sequence[Path], budget: int = SAMPLE_BYTES) -> Repetition:
    """Distinct 4 KiB block share and zstd ratio of a sample of ``paths``."""
    import zstandard

    seen: set[bytes] = set()
    blocks = raw = packed = 0
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    for path, offset in dict.fromkeys(sample_chunks(paths, budget)):
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(CHUNK)
        view = memoryview(data)
        for start in range(0, len(data) - BLOCK + 1, BLOCK):
            seen.add(hashlib.blake2b(view[start : start + BLOCK], digest_size=16).digest())
            blocks += 1
        raw += len(data)
        packed += sum(
            len(compressor.compress(view[start : start + RECORD]))
            for start in range(0, len(data), RECORD)
        )
    return {
        "sample_bytes": raw,
        "block_bytes": BLOCK,
        "distinct_block_share": round(len(seen) / blocks, 4) if blocks else None,
        "compressor": f"zstd level {ZSTD_LEVEL}, {RECORD // 1024} KiB records",
        "compression_ratio": round(raw / packed, 3) if packed else None,
    }


def describe(measured: Repetition) -> str:
    share = measured.get("distinct_block_share")
    ratio = measured.get("compression_ratio")
    if share is None or ratio is None:
        return "repetition not measured (empty sample)"
    return (
        f"{100 * share:.1f} % of 4 KiB blocks distinct, zstd ratio {ratio:.2f} "
        f"(sample of {human_bytes(measured['sample_bytes'])})"
    )
