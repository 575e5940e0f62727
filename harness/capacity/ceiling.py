"""The read ceiling of a dataset's storage: how fast its files can be read at all, measured once
so that a probe's read rate can be set against it.

The harness reads the files itself: ``readers`` threads take files from one shared list of all
the scenario's files, in an order shuffled once (a fixed seed), each file read whole in 1 MiB
requests into a page-aligned buffer; every file is read once before any is read again. A file
system that accepts ``O_DIRECT`` is read with it (past the page cache); one that refuses it
(``EINVAL``: ramfs, some FUSE file systems) is read buffered, each file's cached pages dropped
before (and after) it is read, so that the bytes come from storage and the probes start as cold
as before. The reading stops at the deadline, not at the end of a pass: every reader stays busy
to the end (a pass that ends leaves fewer files than readers, a tail that would understate a
small dataset's rate), and the probes read the same files in repeated epochs too. The record says
how many of the files were read whole and how many passes that made.

fio is an optional comparison (``CapacitySettings.ceiling_fio``), never the default: fio drops
every file smaller than its minimum block and each file's tail past the last whole block (with
``--bs`` the largest file it read 63 of 4,814 JPEGs), and ``O_DIRECT`` needs aligned blocks. The
only settings found that read every byte are buffered with a 1-byte minimum block (``FIO_SETTINGS``;
checked on 300 files of 1 B to 200 KB: ``io_bytes`` equals their total), the files dealt out to
one job per reader in a job file.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import pagecache
from harness.env import find_mount
from harness.errors import HarnessError, one_line
from harness.pipeline import reader_count
from harness.results.capacity_file import CeilingRecord, FioCeiling
from harness.scenario import Scenario

REQUEST = 2**20  # bytes per read
SEED = 0  # the shuffle of the file list: the same order on every run of the same files
# The ceiling is read with the readers of at most this many accelerators: enough to find the
# device's rate, few enough that a search up to 64 does not start thousands of threads.
CEILING_ACCELERATORS = 8
DIRECT = "O_DIRECT"
BUFFERED = "buffered, each file evicted first"
# fio settings that read every byte of every file (see the module's docstring); each job reads
# its files once, in order, each file's page cache invalidated when fio opens it.
FIO_SETTINGS = (
    "rw=read",
    "bsrange=1-1M",
    "bs_unaligned=1",
    "direct=0",
    "invalidate=1",
    "ioengine=psync",
    "file_service_type=sequential",
    "group_reporting=1",
)


@dataclass(frozen=True)
class Ceiling:
    """A measured read ceiling and how it was measured."""

    MBps: float  # MB = 10^6 B
    mode: str  # DIRECT, BUFFERED, or both joined by " and " (files on several file systems)
    mode_reason: str  # e.g. "ramfs at /mnt/x refuses O_DIRECT"
    readers: int
    files_read: int  # distinct files read whole
    files_total: int
    file_reads: int  # whole-file reads, repeats included
    bytes_read: int
    bytes_total: int  # the sizes of all the files
    seconds: float
    errors: list[str] = field(default_factory=list)
    fio: FioCeiling | None = None

    @property
    def passes(self) -> float:
        """Whole-file reads per file: 1.0 when every file was read once."""
        return self.file_reads / self.files_total if self.files_total else 0.0

    @property
    def how(self) -> str:
        """The measurement in one sentence, for the printed line, the report and the limiter."""
        text = (
            f"the harness's own reader, {self.mode} ({self.mode_reason}), {self.readers} "
            f"threads, 1 MiB requests: {self.files_read:,} of {self.files_total:,} files read "
            f"whole, {self.passes:.2f} passes, {self.bytes_read / 1e6:,.1f} MB in "
            f"{self.seconds:.1f} s"
        )
        if self.errors:
            text += f"; {len(self.errors)} reader(s) stopped at an error ({self.errors[0]})"
        if self.fio is not None:
            text += "; " + fio_sentence(self.fio)
        return text

    def record(self) -> CeilingRecord:
        """The measurement as capacity.json keeps it."""
        return CeilingRecord(
            reader="harness",
            mode=self.mode,
            mode_reason=self.mode_reason,
            readers=self.readers,
            request_bytes=REQUEST,
            seed=SEED,
            files_read=self.files_read,
            files_total=self.files_total,
            file_reads=self.file_reads,
            bytes_read=self.bytes_read,
            bytes_total=self.bytes_total,
            passes=round(self.passes, 3),
            seconds=round(self.seconds, 3),
            MBps=round(self.MBps, 3),
            errors=self.errors[:5],
            fio=self.fio,
        )


def fio_sentence(fio: FioCeiling) -> str:
    if fio.error:
        return f"fio (comparison) failed: {fio.error}"
    return (
        f"fio (comparison, {fio.settings}) {fio.MBps or 0:.1f} MB/s, "
        f"{(fio.bytes_read or 0) / 1e6:,.1f} of {(fio.bytes_total or 0) / 1e6:,.1f} MB read"
    )


def search_ceiling(
    scenario: Scenario,
    files: list[Path],
    max_accelerators: int,
    seconds: float,
    *,
    with_fio: bool = False,
) -> Ceiling:
    """The read ceiling a capacity search sets its probes against: the scenario's files read by
    as many readers as the probes will have: the readers the backend keeps per accelerator
    (``harness.pipeline.reader_count``), times up to ``CEILING_ACCELERATORS`` accelerators;
    ``with_fio``: fio's rate over the same files beside it."""
    accelerators = max(1, min(max_accelerators, CEILING_ACCELERATORS))
    readers = reader_count(scenario) * accelerators
    found = read_ceiling(files, readers, seconds)
    if with_fio:
        found = replace(found, fio=fio_ceiling(files, readers, seconds))
    return found


@dataclass
class _Plan:
    """The files in reading order, their sizes, and how each file system is read."""

    order: list[Path]
    sizes: list[int]
    devices: list[int]
    direct: dict[int, bool]  # st_dev -> read with O_DIRECT
    reasons: dict[int, str]  # st_dev -> why


def read_ceiling(
    files: list[Path], readers: int, seconds: float = 10.0, *, passes: int | None = None
) -> Ceiling:
    """The files' read rate with ``readers`` threads, for ``seconds`` (or, with ``passes``,
    until that many whole passes if they end first)."""
    plan = _plan(files)
    count = len(plan.order)
    file_reads = [0] * readers
    byte_counts = [0] * readers
    whole = bytearray(count)  # 1 where a file was read whole at least once
    errors: list[str] = []
    lock = threading.Lock()
    cursor = [0]
    limit = None if passes is None else passes * count
    started = time.monotonic()
    deadline = started + seconds

    def work(index: int) -> None:
        buffer = mmap.mmap(-1, REQUEST)  # page-aligned, as O_DIRECT wants
        while time.monotonic() < deadline:
            with lock:
                if count == 0 or (limit is not None and cursor[0] >= limit):
                    return
                position = cursor[0] % count
                cursor[0] += 1
            try:
                done, read = _read_file(plan, position, buffer, deadline)
            except OSError as exc:
                errors.append(f"{plan.order[position]}: {exc.strerror or exc}")
                return
            byte_counts[index] += read
            if done:
                file_reads[index] += 1
                whole[position] = 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(time.monotonic() - started, 1e-9)
    modes = sorted({DIRECT if plan.direct[d] else BUFFERED for d in set(plan.devices)})
    return Ceiling(
        MBps=sum(byte_counts) / elapsed / 1e6,
        mode=" and ".join(modes) or DIRECT,
        mode_reason="; ".join(plan.reasons.values()) or "no files",
        readers=readers,
        files_read=sum(whole),
        files_total=count,
        file_reads=sum(file_reads),
        bytes_read=sum(byte_counts),
        bytes_total=sum(plan.sizes),
        seconds=elapsed,
        errors=errors,
    )


def _plan(files: list[Path]) -> _Plan:
    """Every file's size and file system, in a shuffled order; each file system tried once with
    ``O_DIRECT``; the files of those that refuse it flushed and evicted once (``pagecache.evict``
    flushes dirty pages, which the per-read eviction could not drop)."""
    order = list(files)
    random.Random(SEED).shuffle(order)
    sizes, devices = [], []
    for path in order:
        try:
            info = path.stat()
        except OSError as exc:
            raise HarnessError(f"read ceiling: cannot stat {path}: {exc.strerror or exc}") from None
        sizes.append(info.st_size)
        devices.append(info.st_dev)
    direct: dict[int, bool] = {}
    reasons: dict[int, str] = {}
    for path, device in zip(order, devices, strict=True):
        if device not in direct:
            direct[device] = _accepts_direct(path)
            where = _file_system(path)
            reasons[device] = f"{where} {'accepts' if direct[device] else 'refuses'} O_DIRECT"
    pagecache.evict(p for p, d in zip(order, devices, strict=True) if not direct[d])
    return _Plan(order, sizes, devices, direct, reasons)


def _accepts_direct(path: Path) -> bool:
    """Whether the file system of ``path`` opens and reads it with ``O_DIRECT``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise HarnessError(f"read ceiling: cannot open {path}: {exc.strerror or exc}") from None
    buffer = mmap.mmap(-1, REQUEST)
    try:
        os.readv(fd, [buffer])  # some file systems accept the open and refuse the read
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise HarnessError(f"read ceiling: cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
        buffer.close()
    return True


def _file_system(path: Path) -> str:
    """E.g. "fuse.sshfs at /mnt/data"; "its file system" when /proc does not say."""
    try:
        mount = find_mount(Path(os.path.realpath(path)), Path("/proc/self/mountinfo").read_text())
    except OSError:
        mount = None
    return "its file system" if mount is None else f"{mount.fs_type} at {mount.mount_point}"


def _read_file(plan: _Plan, position: int, buffer: mmap.mmap, deadline: float) -> tuple[bool, int]:
    """(read whole, bytes read) of one file; the reading stops early at the deadline."""
    path, device = plan.order[position], plan.devices[position]
    direct = plan.direct[device]
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    total = 0
    try:
        if not direct:
            # Clean pages (the plan flushed the files) are dropped: this read goes to storage.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while True:
            try:
                count = os.readv(fd, [buffer])
            except OSError as exc:
                if not direct or exc.errno != errno.EINVAL:
                    raise
                # O_DIRECT refused at read time (e.g. an odd tail): the rest of this file and
                # every later one on this file system are read buffered.
                plan.direct[device] = direct = False
                plan.reasons[device] += f", but refused a read of {path.name}"
                os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.lseek(fd, total, os.SEEK_SET)
                continue
            if count <= 0:
                return True, total
            total += count
            if time.monotonic() >= deadline:
                return False, total
    finally:
        if not direct:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the probes start cold
        os.close(fd)


def fio_ceiling(files: list[Path], readers: int, seconds: float) -> FioCeiling:
    """fio's read rate over the same files, dealt out to ``readers`` jobs in the same shuffled
    order, one pass at most, stopped after ``seconds``; the error in the record when fio is
    missing or fails."""
    settings = " ".join(f"--{setting}" for setting in FIO_SETTINGS[:-1])
    if shutil.which("fio") is None:
        return FioCeiling(settings=settings, error="fio is not installed")
    order = list(files)
    random.Random(SEED).shuffle(order)
    total = sum(path.stat().st_size for path in order)
    jobs = max(1, min(readers, len(order)))
    lines = ["[global]", *FIO_SETTINGS, f"runtime={seconds:g}"]
    for job in range(jobs):
        # One filename line per file: fio adds them up, and its lines are limited in length.
        lines.append(f"[reader{job}]")
        lines += [f"filename={_fio_name(path)}" for path in order[job::jobs]]
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".fio", prefix="ceiling-") as job_file:
            job_file.write("\n".join(lines) + "\n")
            job_file.flush()
            done = subprocess.run(
                ["fio", "--output-format=json", job_file.name],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
        if done.returncode != 0 or "{" not in done.stdout:
            problem = (done.stderr or done.stdout).strip().splitlines()
            raise ValueError(problem[-1] if problem else f"exit {done.returncode}")
        read = json.loads(done.stdout[done.stdout.index("{") :])["jobs"][0]["read"]
        runtime_s = read["runtime"] / 1000
        return FioCeiling(
            MBps=round(read["io_bytes"] / runtime_s / 1e6, 3) if runtime_s > 0 else None,
            bytes_read=read["io_bytes"],
            bytes_total=total,
            seconds=round(runtime_s, 3),
            settings=settings + f" --numjobs={jobs} (files dealt out)",
        )
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        return FioCeiling(settings=settings, error=one_line(exc, 160))


def _fio_name(path: Path) -> str:
    # fio splits a filename at ':' unless it is escaped.
    return str(path.resolve()).replace(":", "\\:")
