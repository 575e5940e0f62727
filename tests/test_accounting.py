"""The host's page ledger: a page asked for by several processes or threads counts once, as the
kernel reads it once; what the ledger cannot place is still counted; ledgers of killed runs go.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from harness.pipeline.accounting import (
    PAGE,
    CountingFile,
    SharedPageLedger,
    ledger_path,
    remove_stale_ledgers,
)

FILE_PAGES = 1024


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(FILE_PAGES * PAGE - 100))  # the last page is partly filled
    return path


def _ask(ledger: SharedPageLedger, key: str, seed: int, start, results) -> None:
    """Ask for 800 random pages (many shared with the other askers), 50 at a time."""
    pages = np.random.default_rng(seed).integers(0, FILE_PAGES, 800)
    start.wait()
    fresh = sum(ledger.note(key, chunk, FILE_PAGES * PAGE) for chunk in np.split(pages, 16))
    results.put((seed, fresh, pages.tolist()))


def test_pages_asked_by_several_processes_count_once(tmp_path: Path, data_file: Path) -> None:
    ledger = SharedPageLedger.create(tmp_path / "ledger", [data_file])
    context = multiprocessing.get_context("fork")  # as DataLoader workers: inherited, reopened
    start, results = context.Barrier(4), context.Queue()
    askers = [
        context.Process(target=_ask, args=(ledger, str(data_file), seed, start, results))
        for seed in range(4)
    ]
    for asker in askers:
        asker.start()
    found = [results.get(timeout=30) for _ in askers]
    for asker in askers:
        asker.join(timeout=30)
    union = set().union(*(pages for _, _, pages in found))
    assert sum(fresh for _, fresh, _ in found) == len(union) * PAGE
    # The parent sees the same ledger: everything asked is known, nothing new is left.
    assert ledger.note(str(data_file), np.array(sorted(union)), FILE_PAGES * PAGE) == 0


def test_threads_sharing_one_ledger_count_a_page_once(tmp_path: Path, data_file: Path) -> None:
    ledger = SharedPageLedger.create(tmp_path / "ledger", [data_file])
    counts: list[int] = []
    gate = threading.Barrier(4)

    def ask() -> None:
        gate.wait()
        counts.append(
            sum(
                ledger.note_range(str(data_file), offset, 8 * PAGE, FILE_PAGES * PAGE)
                for offset in range(0, FILE_PAGES * PAGE, 4 * PAGE)
            )
        )

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == FILE_PAGES * PAGE


def test_a_second_creator_joins_and_a_reader_counts_through_it(
    tmp_path: Path, data_file: Path
) -> None:
    first = SharedPageLedger.create(tmp_path / "ledger", [data_file])
    assert first.note_range(str(data_file), 0, 10 * PAGE, FILE_PAGES * PAGE) == 10 * PAGE
    # Another process of the host creating the same run's ledger joins it, resetting nothing.
    second = SharedPageLedger.create(tmp_path / "ledger", [data_file])
    assert second.note_range(str(data_file), 5 * PAGE, 10 * PAGE, FILE_PAGES * PAGE) == 5 * PAGE
    # A pickled ledger (a spawned worker's) opens the same file.
    copy = pickle.loads(pickle.dumps(second))
    assert copy.note_range(str(data_file), 12 * PAGE, 6 * PAGE, FILE_PAGES * PAGE) == 3 * PAGE
    assert not list(tmp_path.glob("*.tmp"))


def test_files_the_ledger_does_not_list_are_still_counted(tmp_path: Path, data_file: Path) -> None:
    ledger = SharedPageLedger.create(tmp_path / "ledger", [])
    assert ledger.note_range(str(data_file), 0, 3 * PAGE, FILE_PAGES * PAGE) == 3 * PAGE
    assert ledger.note_range(str(data_file), 0, 3 * PAGE, FILE_PAGES * PAGE) == 0
    assert ledger.note_range(str(data_file), 0, 0, FILE_PAGES * PAGE) == 0


def test_ledgers_of_runs_whose_creator_died_are_removed(tmp_path: Path, data_file: Path) -> None:
    live = SharedPageLedger.create(tmp_path / "harness-ledger-live", [data_file])
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; "
            "from harness.pipeline.accounting import SharedPageLedger; "
            f"SharedPageLedger.create(Path(sys.argv[1]), [Path({str(data_file)!r})])",
            str(tmp_path / "harness-ledger-killed"),
        ],
        capture_output=True,
        text=True,
    )
    assert dead.returncode == 0, dead.stderr
    (tmp_path / "harness-ledger-other").write_bytes(b"not a ledger at all")
    for run in ("live", "killed", "gone"):  # the fetch logs of each run's ranks
        (tmp_path / f"harness-fetches-{run}-rank0").write_bytes(b"")
    remove_stale_ledgers(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("harness-ledger-*")) == [
        "harness-ledger-live",
        "harness-ledger-other",
    ]
    assert live.path.exists()
    # a fetch log stays while its run's ledger does (its run is alive), else it goes
    assert [p.name for p in tmp_path.glob("harness-fetches-*")] == ["harness-fetches-live-rank0"]


def test_the_ledger_lives_in_memory_not_on_the_storage() -> None:
    path = ledger_path("some-run")
    assert path.name == "harness-ledger-some-run"
    if Path("/dev/shm").is_dir():
        assert path.parent == Path("/dev/shm")


def test_read_ahead_a_read_causes_is_counted(tmp_path: Path) -> None:
    """A decoder's small sequential reads make the kernel read ahead: the counted first-time
    bytes are the pages the kernel brought in (mincore), not only those asked for."""
    from harness import pagecache
    from harness.pipeline.accounting import PageLedger

    path = tmp_path / "video.bin"
    with open(path, "wb") as handle:
        handle.write(os.urandom(2**22))
        handle.flush()
        os.fsync(handle.fileno())
    pagecache.evict([path])
    if pagecache.resident_page_bytes([path]) != 0:
        pytest.skip(f"{tmp_path}: pages cannot be evicted here (a memory filesystem?)")
    with CountingFile(path, PageLedger()) as handle:
        for _ in range(8):
            assert len(handle.read(PAGE)) == PAGE
    brought_in = pagecache.resident_page_bytes([path])
    assert handle.reads.requested == 8 * PAGE
    assert handle.reads.first_time == brought_in >= 8 * PAGE
