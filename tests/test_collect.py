"""Collectors against real processes, files and /proc: no mocks of what they measure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from harness.collect import make_collectors
from harness.collect.cpu import CpuCollector, parse_stat
from harness.collect.gpu import GpuCollector
from harness.collect.procio import IoCollector

MB = 10**6

# Evicts the file named by argv[1] from the page cache, then reads all of it.
READER = textwrap.dedent(
    """
    import os, sys
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    while os.read(fd, 1 << 20):
        pass
    os.close(fd)
    """
)

# The root of the io test's tree: runs a reader to completion (reaping it, so the kernel folds
# its I/O into ours), then leaves an orphan behind that reads a second file after we have gone.
# Each step waits for the test's word (a line on stdin; for the orphan, a file that appears),
# given once the collector has seen what it must: no sleep decides the outcome.
ROOT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    reader, first, second, release = sys.argv[1:5]
    sys.stdin.readline()  # wait until the collector has its baseline
    subprocess.run([sys.executable, "-c", reader, first], check=True)
    orphan = (
        "import os, subprocess, sys, time\\n"
        "while os.getppid() == int(sys.argv[4]): time.sleep(0.01)\\n"  # the root has gone
        "subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], check=True)\\n"
        "while not os.path.exists(sys.argv[3]): time.sleep(0.01)\\n"  # counters seen
    )
    kid = subprocess.Popen(
        [sys.executable, "-c", orphan, reader, second, release, str(os.getpid())],
        stdin=subprocess.DEVNULL,
    )
    print(kid.pid, flush=True)
    sys.stdin.readline()  # the collector has found the orphan-to-be while we live
    """
)

# Outside the tree: adopts the orphan (a child subreaper, as init would, but reaping at once)
# so the test knows when every process of the tree has gone.
KEEPER = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    root = subprocess.Popen([sys.executable, "-c", *sys.argv[1:]])  # shares our stdin
    print(root.pid, flush=True)
    root.wait()
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    """
)

# Burns CPU time (not wall time, so a loaded machine only makes it slower), with a busy
# grandchild alongside; prints the monotonic clock around the busy phase.
BURNER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    sys.stdin.readline()  # wait until the collector has its baseline
    burn = (
        "import time\\nend = time.process_time() + 0.5\\n"
        "while time.process_time() < end: pass\\n"
    )
    began = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", burn])
    exec(burn)
    child.wait()
    ended = time.monotonic()
    times = os.times()  # this process and its reaped child: what the collector must find
    burnt = times.user + times.system + times.children_user + times.children_system
    print(json.dumps({"began": began, "ended": ended, "cpu_s": burnt}), flush=True)
    sys.stdin.readline()  # live on until the collector has seen the final counters
    """
)


def _until(condition, what: str, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (a handshake with the collector, not a guess of how
    long it takes on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _last(collector, column: str) -> float:
    frame = collector.frame()
    return float(frame[column].iloc[-1]) if len(frame) else float("nan")


def _seen_after(collector, after: float, *, procs: int, rows: int = 1) -> bool:
    """Whether ``rows`` samples taken after ``after`` (seconds since t0) counted ``procs``
    live processes (at least, or exactly none)."""
    frame = collector.frame()
    later = frame[frame["t"] > after]["procs"]
    return int(((later == 0) if procs == 0 else (later >= procs)).sum()) >= rows


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def cold_file(path: Path, size: int) -> Path:
    """A file of random bytes on disk, not in the page cache."""
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def own_read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no read_bytes in /proc/self/io")


def require_cold_reads(directory: Path) -> None:
    """Skip where evicting and re-reading a file does not reach the disk (tmpfs, some FUSE)."""
    probe = cold_file(directory / "probe.bin", 1 << 20)
    before = own_read_bytes()
    assert len(probe.read_bytes()) == 1 << 20
    if own_read_bytes() - before < (1 << 20) * 0.9:
        pytest.skip(f"reads under {directory} are not counted in read_bytes (no block device?)")


@pytest.mark.parametrize("mode", ["children", "scan"])
def test_io_counts_the_tree_including_reaped_and_orphaned_children(tmp_path: Path, mode: str):
    require_cold_reads(tmp_path)
    first = cold_file(tmp_path / "first.bin", 6 * MB)
    second = cold_file(tmp_path / "second.bin", 4 * MB)
    t0 = time.monotonic()
    release = tmp_path / "release"
    keeper = subprocess.Popen(
        [sys.executable, "-c", KEEPER, ROOT, READER, str(first), str(second), str(release)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert keeper.stdout is not None and keeper.stdin is not None
    root_pid = int(keeper.stdout.readline())
    collector = IoCollector(rate_hz=20, t0=t0, root_pid=root_pid, dataset_path=first)
    assert collector.unavailable is None
    if mode == "scan":
        collector._tree.mode = "scan"  # the fallback for kernels without children files
    elif collector._tree.mode != "children":
        pytest.skip("this kernel has no /proc/<pid>/task/<tid>/children")
    collector.start()
    try:
        _until(lambda: len(collector.frame()) >= 1, "a baseline")
        keeper.stdin.write("go\n")
        keeper.stdin.flush()
        orphan = int(keeper.stdout.readline())  # the root has read the first file
        announced = time.monotonic() - t0
        # the root lives on until the collector has sampled its tree with the orphan in it
        _until(lambda: _seen_after(collector, announced, procs=2), "the orphan is found")
        keeper.stdin.write("exit\n")
        keeper.stdin.flush()
        # the orphan ends once its reads are in the collector's counters
        _until(lambda: _last(collector, "read_bytes") >= 10 * MB * 0.95, "the orphan's reads")
        release.touch()
        keeper.communicate(timeout=20)  # returns once the whole tree has been reaped
        assert not Path(f"/proc/{orphan}").exists() or _zombie(orphan)
        gone = time.monotonic() - t0
        _until(lambda: _seen_after(collector, gone, procs=0, rows=2), "samples with none alive")
    finally:
        collector.stop()
    assert keeper.returncode == 0
    frame = collector.frame()
    assert collector.error is None
    expected = 10 * MB
    final = frame.iloc[-1]
    assert final["procs"] == 0
    # everything read by the reaped reader (folded into the root's counters) and by the orphan
    # (reaped outside the tree: its last value seen is kept) is still there once all have
    # exited, and counted once: keeping the reader's own value as well would give 16 MB
    assert expected * 0.95 <= final["read_bytes"] <= expected * 1.1 + MB, final["read_bytes"]
    assert final["rchar"] >= expected
    assert (np.diff(frame["read_bytes"]) >= 0).all()
    assert (np.diff(frame["rchar"]) >= 0).all()
    assert frame["read_MBps"].max() > 0
    if collector.device is not None:  # the disk under tmp_path saw at least our reads
        assert final["device_read_bytes"] >= expected * 0.9
    summary = collector.summary(0.0, float(frame["t"].iloc[-1]))
    assert summary["read_bytes"]["value"] == pytest.approx(
        final["read_bytes"] - frame["read_bytes"][0]
    )
    assert summary["read_MBps"]["unit"] == "MB/s"
    assert summary["read_MBps"]["value"] > 0
    assert summary["read_MBps"]["direction"] == "context"


def test_io_device_of_a_dataset_without_a_block_device():
    """/dev/shm is tmpfs: no diskstats line, so the note says so and totals are all disks."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    collector = IoCollector(
        rate_hz=10, t0=time.monotonic(), root_pid=os.getpid(), dataset_path=Path("/dev/shm/x/y")
    )
    assert collector.device is None
    assert collector.device_note and "tmpfs" in collector.device_note
    assert "total of all real disks" in collector.device_note


@contextlib.contextmanager
def _cpu_of(script: str):
    """A Python ``script`` in a process the cpu collector samples from before it starts: the
    script waits for a line on stdin ("go", sent once the collector has a baseline), and for
    another before it exits (``communicate("exit\\n")``). Yields (process, collector, t0)."""
    t0 = time.monotonic()
    root = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    collector = CpuCollector(rate_hz=20, t0=t0, root_pid=root.pid)
    assert root.stdin is not None and root.stdout is not None
    collector.start()
    try:
        _until(lambda: len(collector.frame()) >= 1, "a baseline")
        root.stdin.write("go\n")
        root.stdin.flush()
        yield root, collector, t0
    finally:
        collector.stop()
        if root.poll() is None:
            root.kill()


def test_cpu_counts_a_busy_tree():
    with _cpu_of(BURNER) as (root, collector, t0):
        phase = json.loads(root.stdout.readline())
        ended = phase["ended"] - t0
        # the tree lives on until a sample after its busy phase has its final CPU time
        _until(lambda: _seen_after(collector, ended, procs=1), "a sample after the busy phase")
        root.communicate("exit\n", timeout=30)
    assert collector.error is None
    frame = collector.frame()
    began = phase["began"] - t0
    summary = collector.summary(began, ended)
    print(f"busy tree: {summary['cpu_pct']['value']:.0f} % of a core")
    # Over the busy phase the tree used what it burnt, however slowly a loaded machine let it
    # (1 s of CPU in a span it measured itself): the samples around the phase's edges may miss
    # part of it, not double it.
    burning = 100 * 1.0 / (phase["ended"] - phase["began"])
    assert 0.5 * burning < summary["cpu_pct"]["value"] < 1.5 * burning + 10
    assert summary["cpu_pct"]["unit"] == "% of a core"
    # 1 s of CPU burnt by the child and its reaped grandchild, plus interpreter start-up: what
    # the tree's own clock says, counted once
    assert 0.95 <= frame["cpu_s"].iloc[-1] <= phase["cpu_s"] + 0.15
    assert (np.diff(frame["cpu_s"]) >= 0).all()
    assert summary["rss_MiB"]["value"] > 0
    # While the tree runs its memory is counted (samples after it exited find it gone).
    running = frame[(frame["t"] >= phase["began"] - t0) & (frame["t"] <= phase["ended"] - t0)]
    assert len(running) > 0 and (running["rss_MiB"] > 0).all()
    cores = os.cpu_count() or 1
    for core in range(cores):
        assert f"cpu_core_pct[{core}]" in frame.columns
        assert f"cpu_core_pct[{core}]" in summary
    per_core = frame[[f"cpu_core_pct[{core}]" for core in range(cores)]].to_numpy()[1:]
    finite = per_core[np.isfinite(per_core)]  # NaN only where no clock tick passed in between
    assert finite.size >= per_core.size * 0.8
    assert ((finite >= 0) & (finite <= 100)).all()
    assert 0 < summary["cpu_cores_pct"]["value"] <= 100


PIPELINE_BURNER = textwrap.dedent(
    """
    import os, sys, time
    from harness.lifeline import DATA_WORKER_NAME, name_this_process

    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    sys.stdin.readline()
    child = os.fork()
    if child == 0:  # a data worker: named as the DataLoader's are, burns 0.6 s, exits
        name_this_process(DATA_WORKER_NAME)
        burn(0.6)
        os._exit(0)
    burn(0.3)  # the rank's own share
    os.waitpid(child, 0)  # reaped: its CPU moves into this process's cutime
    print("reaped", flush=True)
    sys.stdin.readline()
    """
)


def test_cpu_tells_the_data_workers_share_apart_even_after_they_are_reaped():
    with _cpu_of(PIPELINE_BURNER) as (root, collector, t0):
        assert root.stdout.readline().strip() == "reaped"
        reaped = time.monotonic() - t0
        _until(lambda: _seen_after(collector, reaped, procs=1, rows=2), "samples after the reap")
        root.communicate("exit\n", timeout=30)
    frame = collector.frame()
    assert frame["pipeline_procs"].max() == 1  # the worker was seen under its name
    # the worker's 0.6 s stay the pipeline's after its rank reaped it (not dropped, not doubled),
    # and count once in the tree's total beside the rank's 0.3 s
    assert 0.55 <= frame["pipeline_cpu_s"].iloc[-1] <= 0.75
    assert 0.85 <= frame["cpu_s"].iloc[-1] <= 1.05 + 0.15
    summary = collector.summary(0.0, float(frame["t"].iloc[-1]))
    assert 0 < summary["pipeline_cpu_pct"]["value"] < summary["cpu_pct"]["value"]
    # a window without a data worker alive has no pipeline figure: not measured, not 0
    last = float(frame["t"].iloc[-1])
    assert collector.summary(reaped + 0.1, last)["pipeline_cpu_pct"]["value"] is None


def test_parse_stat_knows_a_data_worker_by_its_whole_name():
    tail = " S 1 1 1 0 -1 0 0 0 0 0 7 3 2 1 20 0 1 0 100 1000 55 0"
    assert parse_stat(f"12 (harness-data){tail}".encode()) == (13, 13, 55, 1)
    assert parse_stat(f"12 (python3){tail}".encode()) == (13, 0, 55, 0)
    assert parse_stat(f"12 (x (harness-data){tail}".encode())[3] == 0  # a name with ") (" in it


@pytest.mark.no_gpu
def test_gpu_collector_says_why_it_is_not_available():
    """Without a GPU: "not available: reason", an empty frame, no metrics, no cost. (With one,
    tests/test_gpu.py samples it for real.)"""
    collector = GpuCollector(rate_hz=20, t0=time.monotonic())
    collector.start()
    collector.stop()
    collector.stop()
    assert collector.unavailable is not None and collector.unavailable.startswith("not available: ")
    assert len(collector.unavailable) > len("not available: ")
    frame = collector.frame()
    assert frame.empty and list(frame.columns) == ["t"]
    assert collector.summary(0.0, 1e9) == {}
    assert collector.cpu_seconds == 0.0


def test_fixed_rate_schedule_and_quick_stop():
    """Ticks are due on a fixed grid from the first sample: a sample is never early, a tick is
    sampled at most once, a missed tick is skipped and counted (never made up late). Judged on
    the samples taken, however late a loaded machine wakes the thread."""
    t0 = time.monotonic()
    collector = make_collectors(
        ["io"], rate_hz=20, root_pid=os.getpid(), dataset_path=Path.cwd(), t0=t0
    )[0]
    started = time.monotonic() - t0
    collector.start()
    _until(lambda: len(collector.frame()) >= 20, "20 samples")
    asked = time.monotonic()
    collector.stop()
    took = time.monotonic() - asked
    collector.stop()  # idempotent
    t = collector.frame()["t"].to_numpy()
    print(
        f"{len(t)} samples at 20 Hz, {collector.missed_ticks} ticks missed; stop() took "
        f"{took * 1000:.1f} ms"
    )
    assert (np.diff(t) > 0).all()
    assert t[0] >= started  # the first sample is taken by the thread, after start()
    grid = (t[:-1] - t[0]) / 0.05  # every sample but the final one is due on the grid
    ticks = np.floor(grid + 1e-6)
    late = grid - ticks
    assert (np.diff(ticks) >= 1).all()  # no tick sampled twice, no burst to catch up
    # every tick up to the last one sampled was sampled or counted as missed
    assert len(t) - 1 + collector.missed_ticks >= ticks[-1] + 1
    # most samples sit on their tick (a late wake-up delays one sample, not the phase)
    assert np.median(late) < 0.3, late
    # a hang guard, not a speed target (bench_collect.py times the sampler): a stop that waited
    # for a wedged thread would not return at all
    assert took < 30.0


def test_sampler_cost_is_small():
    """io + cpu at 10 Hz on a tree of 5 processes: a sanity bound (10 % of a core) against a
    runaway sampler; the product's target (1 %) is measured by ``benchmarks/bench_collect.py``
    on a quiet machine, not here, where other tests share the cores."""
    root = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            "kids = [subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],"
            " stdin=subprocess.PIPE) for _ in range(4)]\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",  # all end when the test closes their input or kills them
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that the whole tree can be ended at once
    )
    assert root.stdout is not None
    try:
        assert root.stdout.readline() == "ready\n"  # the four children are started
        t0 = time.monotonic()
        collectors = make_collectors(
            ["io", "cpu"], rate_hz=10, root_pid=root.pid, dataset_path=Path.cwd(), t0=t0
        )
        began = time.monotonic()
        for collector in collectors:
            collector.start()
        _until(lambda: len(collectors[1].frame()) >= 10, "10 samples")
        for collector in collectors:
            collector.stop()
        wall = time.monotonic() - began
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()
    assert collectors[0].frame()["procs"].iloc[-1] == 5
    used = sum(collector.cpu_seconds for collector in collectors)
    share = 100 * used / wall
    print(f"sampler cost: {share:.3f} % of a core in {wall:.2f} s")
    assert all(collector.error is None for collector in collectors)
    assert share <= 10.0


def test_make_collectors_names():
    with pytest.raises(ValueError, match="'disk'"):
        make_collectors(
            ["io", "disk"], rate_hz=10, root_pid=os.getpid(), dataset_path=Path.cwd(), t0=0.0
        )
    made = make_collectors(
        ["cpu", "latency", "io", "cpu"],
        rate_hz=10,
        root_pid=os.getpid(),
        dataset_path=Path.cwd(),
        t0=0.0,
    )
    assert [c.name for c in made] == ["cpu", "io"]
    with pytest.raises(ValueError, match="rate_hz"):
        make_collectors(["io"], rate_hz=0, root_pid=os.getpid(), dataset_path=Path.cwd(), t0=0.0)


def test_summary_of_an_empty_window_is_not_measured():
    collector = make_collectors(
        ["io"], rate_hz=20, root_pid=os.getpid(), dataset_path=Path.cwd(), t0=time.monotonic()
    )[0]
    collector.start()
    time.sleep(0.15)
    collector.stop()
    assert len(collector.frame()) >= 2
    summary = collector.summary(100.0, 200.0)
    assert summary["read_MBps"] == {"value": None, "unit": "MB/s", "direction": "context"}
    assert summary["read_bytes"]["value"] is None


def test_missing_root_process_is_unavailable():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    made = make_collectors(
        ["io", "cpu"], rate_hz=10, root_pid=dead.pid, dataset_path=Path.cwd(), t0=0.0
    )
    for collector in made:
        assert collector.unavailable == f"process {dead.pid} not found"
        collector.start()
        collector.stop()
        assert collector.frame().empty
        assert collector.summary(0, 1) == {}
