"""The read ceiling reads every file whole: real files of mixed sizes on disk, read with
``O_DIRECT`` where the file system accepts it and buffered (evicted first) where it refuses it;
fio, the optional comparison, with settings that read every byte."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.capacity.ceiling import BUFFERED, DIRECT, fio_ceiling, read_ceiling
from harness.cli import build_parser
from harness.commands.capacity import settings_from
from harness.results.capacity_file import (
    CapacityFile,
    ScenarioSearch,
    read_capacity_file,
    write_capacity_file,
)

EXAMPLE = Path(__file__).resolve().parent / "data" / "capacity" / "example-capacity.json"


def mixed_files(folder: Path, count: int = 300, largest: int = 200_000) -> list[Path]:
    """``count`` files from 1 byte to ``largest`` bytes, most not a multiple of 4 KiB, a few that
    are (and one of exactly 4 KiB and one over 1 MiB, read in two requests)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [random.Random(7).randint(1, largest) for _ in range(count - 4)]
    sizes += [1, 4096, 8192, 2**20 + 4097]
    files = []
    for index, size in enumerate(sizes):
        path = folder / f"f{index:03d}.bin"
        path.write_bytes(os.urandom(size))
        files.append(path)
    return files


def accepts_direct(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
        return False
    return True


def test_every_file_is_read_whole_once_per_pass(tmp_path: Path) -> None:
    files = mixed_files(tmp_path / "data")
    total = sum(path.stat().st_size for path in files)
    assert any(path.stat().st_size % 4096 for path in files)

    once = read_ceiling(files, readers=4, seconds=3600, passes=1)
    assert (once.files_read, once.files_total, once.file_reads) == (300, 300, 300)
    assert (once.bytes_read, once.bytes_total) == (total, total)
    assert once.passes == 1.0 and not once.errors

    twice = read_ceiling(files, readers=3, seconds=3600, passes=2)
    assert (twice.files_read, twice.file_reads, twice.bytes_read) == (300, 600, 2 * total)
    assert twice.passes == 2.0


def test_o_direct_is_used_where_the_file_system_accepts_it(tmp_path: Path) -> None:
    files = mixed_files(tmp_path / "data", count=20)
    found = read_ceiling(files, readers=2, seconds=3600, passes=1)
    if accepts_direct(files[0]):
        assert found.mode == DIRECT and "accepts O_DIRECT" in found.mode_reason
    else:
        assert found.mode == BUFFERED and "refuses O_DIRECT" in found.mode_reason
    assert found.bytes_read == sum(path.stat().st_size for path in files)


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A ramfs mount: a real file system that refuses O_DIRECT (tmpfs accepts it since Linux 6.6,
    and FUSE does on recent kernels)."""
    if os.geteuid() != 0:
        pytest.skip("mounting ramfs (a file system that refuses O_DIRECT) needs root")
    mount = tmp_path / "ramfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "ramfs", "none", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount ramfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_file_system_that_refuses_o_direct_is_read_buffered_and_named(ramfs: Path) -> None:
    files = mixed_files(ramfs / "data", count=50)
    assert not accepts_direct(files[0])
    found = read_ceiling(files, readers=4, seconds=3600, passes=1)
    assert found.mode == BUFFERED
    assert f"ramfs at {ramfs} refuses O_DIRECT" in found.mode_reason
    assert (found.files_read, found.bytes_read) == (50, sum(p.stat().st_size for p in files))
    assert "buffered, each file evicted first (ramfs at" in found.how


def test_the_deadline_stops_the_readers(tmp_path: Path) -> None:
    files = mixed_files(tmp_path / "data", count=5)
    found = read_ceiling(files, readers=2, seconds=0)
    assert (found.files_read, found.file_reads, found.bytes_read) == (0, 0, 0)
    assert found.files_total == 5


def test_the_record_says_how_and_old_files_still_read(tmp_path: Path) -> None:
    files = mixed_files(tmp_path / "data", count=10)
    found = read_ceiling(files, readers=2, seconds=3600, passes=1)
    assert "10 of 10 files read whole, 1.00 passes" in found.how
    document = CapacityFile(
        scenarios=[
            ScenarioSearch(ceiling_MBps=found.MBps, ceiling_how=found.how, ceiling=found.record())
        ]
    )
    write_capacity_file(document, tmp_path / "capacity.json")
    (entry,) = read_capacity_file(tmp_path / "capacity.json").scenarios
    assert entry.ceiling is not None
    assert entry.ceiling.reader == "harness" and entry.ceiling.mode == found.mode
    assert (entry.ceiling.files_read, entry.ceiling.files_total) == (10, 10)
    assert entry.ceiling.bytes_read == found.bytes_total and entry.ceiling.readers == 2
    assert entry.ceiling.fio is None
    # A file of an earlier harness has no "ceiling" record: it reads as None.
    (old,) = read_capacity_file(EXAMPLE).scenarios
    assert old.ceiling is None and old.ceiling_MBps == 35.02


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_the_fio_comparison_reads_every_byte(tmp_path: Path) -> None:
    files = mixed_files(tmp_path / "data", count=120)
    fio = fio_ceiling(files, readers=3, seconds=600)
    assert fio.error is None, fio.error
    assert fio.bytes_read == fio.bytes_total == sum(p.stat().st_size for p in files)
    assert "--bsrange=1-1M" in fio.settings and "--numjobs=3" in fio.settings


def test_fio_is_only_a_comparison_asked_for() -> None:
    plain = build_parser().parse_args(["capacity", "s.yaml"])
    assert settings_from(plain).ceiling_fio is False
    asked = build_parser().parse_args(["capacity", "s.yaml", "--ceiling-fio"])
    assert settings_from(asked).ceiling_fio is True
