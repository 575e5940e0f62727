"""Per-mount byte accounting (issue 24): who counts the bytes of each mount, the pipeline's cache
misses (mincore before the read, once per page per host) and the cross-check by that source."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from harness import pagecache
from harness.collect.misses import MissCounter
from harness.collect.mounts import counted_by, locate, parse_net_dev, server_host
from harness.pipeline.accounting import PAGE, PageLedger, Reads, SharedPageLedger, missed_path
from harness.pipeline.sources import Source
from harness.summary import RankRecords, missed_cross_check


@pytest.mark.parametrize(
    ("fs_type", "source", "server"),
    [
        ("fuse.sshfs", "root@10.201.1.1:/srv/harness-lab/export", "10.201.1.1"),
        ("fuse.sshfs", "storage:/data", "storage"),
        ("fuse.sshfs", "me@[fd00::1]:/data", "fd00::1"),
        ("nfs4", "filer.example:/vol/train", "filer.example"),
        ("nfs", "[fd00::2]:/export", "fd00::2"),
        ("cifs", "//nas/share", "nas"),
        ("ceph", "mon1,mon2:/", "mon1"),
        ("ext4", "/dev/vda1", None),
        ("tmpfs", "tmpfs", None),
        ("fuse.s3fs", "s3fs", None),
        ("nfs", "nonsense", None),
    ],
)
def test_the_server_of_a_network_mount_is_read_from_its_source(
    fs_type: str, source: str, server: str | None
) -> None:
    assert server_host(fs_type, source) == server


def test_each_file_system_has_the_source_that_sees_its_reads() -> None:
    assert counted_by("ext4", "vda") == "block"
    assert counted_by("nfs4", None) == "nfs"
    assert counted_by("fuse.sshfs", None) == "pipeline"
    assert counted_by("fuse.sshfs", "vda") == "pipeline"  # FUSE never counts read_bytes
    assert counted_by("tmpfs", None) == "pipeline"


def test_net_dev_is_parsed_per_interface() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo: 390039764  153626    0    0    0     0          0         0 390039764  153626"
        "    0    0    0     0       0          0\n"
        "  hlc1: 25700000  18000    0    0    0     0          0         0   950000    9000"
        "    0    0    0     0       0          0\n"
    )
    assert parse_net_dev(text) == {"lo": (390039764, 390039764), "hlc1": (25700000, 950000)}


def test_a_local_folder_is_counted_by_its_block_device_or_the_pipeline(tmp_path: Path) -> None:
    found = locate(tmp_path / "not-yet", "dataset")
    assert found.mount_point is not None and found.fs_type is not None
    assert found.server is None and found.interface is None
    assert found.counted_by == counted_by(found.fs_type, found.device)
    record = found.record()
    assert record["role"] == "dataset" and record["counted_by_source"]


def _add_many(path: Path, times: int) -> None:
    counter = MissCounter(path)
    for _ in range(times):
        counter.add(PAGE)


def test_the_miss_counter_is_one_count_for_every_process_of_a_host(tmp_path: Path) -> None:
    counter = MissCounter.create(tmp_path / "misses")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_many, args=(counter.path, 500)) for _ in range(3)]
    for worker in workers:
        worker.start()
    _add_many(counter.path, 500)
    for worker in workers:
        worker.join()
    assert counter.value() == 4 * 500 * PAGE
    counter.remove()
    assert MissCounter(tmp_path / "misses").value() is None  # gone: not a zero


def test_misses_are_the_pages_absent_before_the_read_first_time_or_not() -> None:
    ledger = PageLedger()
    pages = np.arange(10)
    # pages 0-9 asked for the first time, 2-5 absent before the read: 4 misses
    assert ledger.note("f", pages, 10 * PAGE, absent=np.arange(2, 6)) == 10 * PAGE
    assert ledger.missed_bytes == 4 * PAGE
    # asked again, 0-2 absent again (evicted meanwhile): not first-time, yet the storage sends
    # them again (a dataset larger than RAM): counted again
    assert ledger.note("f", pages, 10 * PAGE, absent=np.arange(3)) == 0
    assert ledger.missed_bytes == 7 * PAGE
    # no residency known: nothing counted as missed
    ledger.note("g", pages, 10 * PAGE)
    assert ledger.missed_bytes == 7 * PAGE
    # a last page partly past the file's end counts the file's bytes only
    ledger.note("h", np.arange(3), 2 * PAGE + 10, absent=np.arange(3))
    assert ledger.missed_bytes == 9 * PAGE + 10


def test_a_shared_ledger_counts_its_hosts_misses_in_its_counter(tmp_path: Path) -> None:
    data = tmp_path / "a.bin"
    data.write_bytes(b"x" * (8 * PAGE))
    ledger = SharedPageLedger.create(tmp_path / "harness-ledger-run1", [data])
    assert missed_path(ledger.path) == tmp_path / "harness-misses-run1"
    ledger.note(str(data), np.arange(8), 8 * PAGE, absent=np.arange(8))
    other = SharedPageLedger(ledger.path)  # another process of the host joins it
    other.note(str(data), np.arange(8), 8 * PAGE, absent=np.arange(0))  # now resident
    assert MissCounter(missed_path(ledger.path)).value() == 8 * PAGE
    other.note(str(data), np.arange(8), 8 * PAGE, absent=np.arange(2))  # 2 evicted, read again
    assert MissCounter(missed_path(ledger.path)).value() == 10 * PAGE


class _Whole(Source):
    def data_files(self) -> list[Path]:
        return []


def test_a_cold_whole_file_read_is_all_misses_and_a_warm_one_none(tmp_path: Path) -> None:
    """mincore before the real read: the pages of an evicted file are misses, those of a file
    just read are not (on the tmp folder's real file system)."""
    cold, warm = tmp_path / "cold.bin", tmp_path / "warm.bin"
    for path in (cold, warm):
        path.write_bytes(os.urandom(20 * PAGE + 100))
    pagecache.evict([cold, warm])
    if pagecache.resident_bytes([cold])[0]:
        pytest.skip(f"{tmp_path}'s file system keeps pages after eviction (tmpfs?)")
    pagecache.warm([warm])
    source = _Whole()
    reads = Reads()
    source.read_whole(cold, reads)
    assert source.ledger.missed_bytes == 20 * PAGE + 100  # the file's bytes, not 21 pages
    source.read_whole(warm, reads)
    assert source.ledger.missed_bytes == 20 * PAGE + 100
    assert reads.first_time == 42 * PAGE


def _part(missed: int | None, link: int | None, interface: str | None) -> RankRecords:
    mount = {"fs_type": "fuse.sshfs", "interface": interface, "counted_by": "pipeline"}
    return RankRecords(
        rank=0,
        steps=[],
        samples=[],
        io_mount=mount,
        io_missed_bytes=missed,
        io_link_rx_bytes=link,
    )


def test_the_misses_are_checked_against_the_link_less_its_overhead() -> None:
    check = missed_cross_check([_part(100_000_000, 101_500_000, "hlc1")], 100_000_000, "cold")
    assert check["ok"] is True and check["verdict"].startswith("agree within 5%")
    assert check["ratio"] == 1.0
    assert check["link_rx_bytes"] == 101_500_000 and check["link_overhead"] == 0.015
    # the link carried a third more than the misses: not agreed, and never "from memory"
    short = missed_cross_check([_part(75_000_000, 106_000_000, "hlc1")], 75_000_000, "cold")
    assert short["ok"] is False and "memory" not in short["verdict"]
    # no link known: against the bytes first asked for
    alone = missed_cross_check([_part(50_000_000, None, None)], 50_000_000, "cold")
    assert alone["ok"] is True and "first requested" in alone["name"]
    # a warm run is not judged
    assert missed_cross_check([_part(0, 0, "hlc1")], 10, "warm")["ok"] is None
