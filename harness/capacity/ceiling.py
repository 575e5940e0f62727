"""The read ceiling of a dataset's storage: how fast its files can be read at all, measured once
so that a probe's read rate can be set against it.

``fio`` reads the files when it is installed (the tool storage engineers trust); otherwise the
harness reads them itself with ``O_DIRECT`` (past the page cache) in as many threads as the
pipeline has readers, and says so. Both read whole files in 1 MiB requests, sequentially within a
file, many files at once: the pattern of a pipeline reading frames or crops' rows, without the
decode.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import pagecache
from harness.errors import one_line
from harness.pipeline import reader_count
from harness.scenario import Scenario

REQUEST = 2**20  # bytes per read
# The ceiling is read with the readers of at most this many accelerators: enough to find the
# device's rate, few enough that a search up to 64 does not start thousands of fio jobs.
CEILING_ACCELERATORS = 8


@dataclass(frozen=True)
class Ceiling:
    MBps: float
    how: str


def search_ceiling(
    scenario: Scenario, files: list[Path], max_accelerators: int, seconds: float
) -> Ceiling:
    """The read ceiling a capacity search sets its probes against: the scenario's files read by
    as many readers as the probes will have: the readers the backend keeps per accelerator
    (``harness.pipeline.reader_count``), times up to ``CEILING_ACCELERATORS`` accelerators."""
    accelerators = max(1, min(max_accelerators, CEILING_ACCELERATORS))
    return read_ceiling(files, reader_count(scenario) * accelerators, seconds)


def read_ceiling(files: list[Path], readers: int, seconds: float = 10.0) -> Ceiling:
    """The files' read rate with ``readers`` in parallel, for at most ``seconds``."""
    if shutil.which("fio") is not None:
        try:
            return _fio(files, readers, seconds)
        except (
            OSError,
            ValueError,
            KeyError,
            ZeroDivisionError,
            subprocess.SubprocessError,
        ) as exc:
            fallback = f"fio failed ({one_line(exc, 120)}); "
    else:
        fallback = "fio is not installed; "
    found = _direct_reads(files, readers, seconds)
    return Ceiling(found.MBps, fallback + found.how)


def _fio(files: list[Path], readers: int, seconds: float) -> Ceiling:
    # ``readers`` jobs over the folder that holds the files, O_DIRECT, psync, each job picking
    # files at random: what a pool of reader processes can pull from the device.
    root = Path(os.path.commonpath([str(path) for path in files]))
    root = root if root.is_dir() else root.parent
    largest = max(path.stat().st_size for path in files)
    request = max(4096, min(REQUEST, largest // 4096 * 4096))  # fio refuses a larger block
    command = [
        "fio",
        "--name=ceiling",
        f"--opendir={root}",
        f"--numjobs={readers}",
        "--rw=read",
        "--ioengine=psync",
        "--direct=1",
        f"--bs={request}",
        "--file_service_type=random",
        "--openfiles=16",
        "--time_based",
        f"--runtime={seconds:g}",
        "--group_reporting",
        "--output-format=json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or "{" not in done.stdout:
        problem = (done.stderr or done.stdout).strip().splitlines()
        raise ValueError(problem[-1] if problem else f"exit {done.returncode}")
    report = json.loads(done.stdout[done.stdout.index("{") :])
    read = report["jobs"][0]["read"]
    return Ceiling(
        read["io_bytes"] / (read["runtime"] / 1000) / 1e6,
        f"fio --opendir {root.name} --rw=read --direct=1 --bs={request // 1024}k "
        f"--ioengine=psync --numjobs={readers}",
    )


def _direct_reads(files: list[Path], readers: int, seconds: float) -> Ceiling:
    deadline = time.monotonic() + seconds
    queue = list(files)
    lock = threading.Lock()
    totals = [0] * readers
    direct = [True]
    errors: list[str] = []

    def work(index: int) -> None:
        buffer = mmap.mmap(-1, REQUEST)  # page-aligned, as O_DIRECT wants
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    return
                path = queue.pop()
            try:
                totals[index] += _read_file(path, buffer, direct)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                return

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(time.monotonic() - started, 1e-9)
    how = "O_DIRECT" if direct[0] else "buffered (O_DIRECT refused), each file evicted first"
    if errors:
        how += f"; {len(errors)} reader(s) stopped at an error ({errors[0]})"
    return Ceiling(
        sum(totals) / elapsed / 1e6,
        f"the harness's own {how} reads, 1 MiB requests, {readers} threads",
    )


def _read_file(path: Path, buffer: mmap.mmap, direct: list[bool]) -> int:
    fd = -1
    if direct[0]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            direct[0] = False  # e.g. tmpfs: evict each file instead, and read it buffered
    if fd < 0:
        pagecache.evict([path])
        fd = os.open(path, os.O_RDONLY)
    total = 0
    try:
        while True:
            try:
                count = os.readv(fd, [buffer])
            except OSError:  # O_DIRECT refused at read time (a file's odd tail on some filesystems)
                os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                os.lseek(fd, total, os.SEEK_SET)
                count = os.readv(fd, [buffer])
            if count <= 0:
                return total
            total += count
    finally:
        os.close(fd)
