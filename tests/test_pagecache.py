"""Page-cache eviction, warming and residency on real files on a real disk."""

from __future__ import annotations

import mmap
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import pagecache
from harness.env import environment
from harness.errors import HarnessError
from harness.pagecache import evict, resident_bytes, warm

REPO = Path(__file__).resolve().parents[1]
MiB = 2**20
# Filesystems whose pages live only in memory: there is nothing to evict them to.
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a filesystem that can drop pages: tmp_path, else one under the repo's data/."""
    for candidate in (tmp_path, REPO / "data"):
        fs_type = environment(candidate)["hardware"]["storage_fs_type"]
        if fs_type in MEMORY_FILESYSTEMS or str(fs_type).startswith("not available"):
            continue
        if candidate == tmp_path:
            yield tmp_path
            return
        folder = candidate / f".pagecache-test-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    pytest.skip("no folder on a disk-backed filesystem to test eviction on")


def write_file(path: Path, size: int) -> Path:
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * MiB))
            handle.write(chunk)
            remaining -= len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def fraction(paths: list[Path]) -> float:
    resident, total = resident_bytes(paths)
    assert 0 <= resident <= total
    return resident / total


def test_evict_warm_evict_moves_a_file_out_of_and_into_memory(disk_dir: Path) -> None:
    size = 32 * MiB
    path = write_file(disk_dir / "data.bin", size)

    assert evict([path]) == size
    assert fraction([path]) < 0.10

    assert warm([path]) == size
    assert fraction([path]) > 0.90

    assert evict([path]) == size
    assert fraction([path]) < 0.10


def test_evict_flushes_dirty_pages_first(disk_dir: Path) -> None:
    """Written but not synced: DONTNEED alone would leave the dirty pages in memory."""
    path = disk_dir / "dirty.bin"
    path.write_bytes(os.urandom(8 * MiB))
    evict([path])
    assert fraction([path]) < 0.10


def test_many_small_files_and_odd_sizes_are_counted_exactly(disk_dir: Path) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    sizes = [1, page - 1, page, page + 1, 3 * page + 17] * 200  # 1,000 files
    paths = [write_file(disk_dir / f"f{i:04d}", size) for i, size in enumerate(sizes)]
    empty = disk_dir / "empty"
    empty.touch()
    paths.append(empty)

    assert warm(paths) == sum(sizes)
    assert resident_bytes(paths) == (sum(sizes), sum(sizes))
    assert evict(paths) == sum(sizes)
    resident, total = resident_bytes(paths)
    assert total == sum(sizes)
    assert resident < 0.10 * total


def test_a_file_larger_than_one_mincore_window(
    disk_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shrink the window to four pages so that an 8 MiB file spans hundreds of them."""
    page = os.sysconf("SC_PAGE_SIZE")
    monkeypatch.setattr(pagecache, "WINDOW", 4 * page)
    size = 8 * MiB + 123
    path = write_file(disk_dir / "big.bin", size)
    evict([path])
    assert resident_bytes([path])[0] < 0.10 * size
    with open(path, "rb") as handle:  # bring back exactly the second half's pages
        handle.seek(size // 2 // page * page)
        handle.read()
    resident, total = resident_bytes([path])
    assert total == size
    assert abs(resident - (size - size // 2 // page * page)) < 0.10 * size


def test_a_missing_file_is_named_in_the_error(disk_dir: Path) -> None:
    there = write_file(disk_dir / "there.bin", MiB)
    missing = disk_dir / "gone.bin"
    for action in (evict, warm, resident_bytes):
        with pytest.raises(HarnessError, match=re.escape(str(missing))):
            action([there, missing])


def test_a_folder_is_not_a_file(disk_dir: Path) -> None:
    with pytest.raises(HarnessError, match="not a regular file"):
        resident_bytes([disk_dir])


def test_a_cold_start_is_verified_and_a_resident_dataset_is_not_called_cold(
    disk_dir: Path,
) -> None:
    files = [write_file(disk_dir / f"part{index}", 2 * MiB) for index in range(2)]
    warm(files)
    state = pagecache.prepare("cold", files, disk_dir)
    assert (state["condition"], state["requested"], state["evictions"]) == ("cold", "cold", 1)
    assert state["resident_bytes_at_start"] <= pagecache.COLD_RESIDENT_LIMIT * 4 * MiB
    # A process that keeps a file mapped keeps its pages: eviction is tried again, then the
    # start is called what it is.
    with open(files[0], "rb") as handle, mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert sum(m[offset] for offset in range(0, 2 * MiB, mmap.PAGESIZE)) >= 0  # touch all
        state = pagecache.prepare("cold", files, disk_dir)
    assert state["condition"] == "partly warm" and state["requested"] == "cold"
    assert state["evictions"] == pagecache.EVICTIONS
    assert 0.45 <= state["resident_fraction_at_start"] <= 0.5
    assert pagecache.prepare("warm", files, disk_dir)["condition"] == "warm"
