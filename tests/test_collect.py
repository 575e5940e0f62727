"""Collectors against real processes, files and /proc: no mocks of what they measure."""

from __future__ import annotations

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
from harness.collect.cpu import CpuCollector
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
ROOT = textwrap.dedent(
    """
    import subprocess, sys, time
    reader, first, second = sys.argv[1:4]
    sys.stdin.readline()  # wait until the collector has its baseline
    subprocess.run([sys.executable, "-c", reader, first], check=True)
    orphan = (
        "import os, subprocess, sys, time\\n"
        "parent = os.getppid()\\n"
        "while os.getppid() == parent: time.sleep(0.01)\\n"
        "subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], check=True)\\n"
        "time.sleep(0.3)\\n"  # long enough for the collector to see the final counters
    )
    subprocess.Popen([sys.executable, "-c", orphan, reader, second], stdin=subprocess.DEVNULL)
    time.sleep(0.5)  # the collector finds the orphan-to-be while we live (see proctree)
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
    import json, subprocess, sys, time
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
    print(json.dumps({"began": began, "ended": ended}), flush=True)
    time.sleep(0.2)
    """
)


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
    keeper = subprocess.Popen(
        [sys.executable, "-c", KEEPER, ROOT, READER, str(first), str(second)],
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
        keeper.communicate("go\n", timeout=20)  # returns once the whole tree has been reaped
        time.sleep(0.12)  # a few samples with nothing alive
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


def test_cpu_counts_a_busy_tree():
    t0 = time.monotonic()
    root = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    collector = CpuCollector(rate_hz=20, t0=t0, root_pid=root.pid)
    collector.start()
    try:
        out, _ = root.communicate("go\n", timeout=30)
    finally:
        collector.stop()
    assert collector.error is None
    phase = json.loads(out)
    frame = collector.frame()
    summary = collector.summary(phase["began"] - t0, phase["ended"] - t0)
    print(f"busy tree: {summary['cpu_pct']['value']:.0f} % of a core")
    assert summary["cpu_pct"]["value"] > 50
    assert summary["cpu_pct"]["unit"] == "% of a core"
    # 1 s of CPU burnt by the child and its reaped grandchild, plus interpreter start-up
    assert 0.95 <= frame["cpu_s"].iloc[-1] <= 1.6
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


def test_gpu_collector():
    collector = GpuCollector(rate_hz=20, t0=time.monotonic())
    collector.start()
    time.sleep(0.3)
    collector.stop()
    collector.stop()
    frame = collector.frame()
    summary = collector.summary(0.0, 1e9)
    if collector.unavailable is not None:
        assert collector.unavailable.startswith("not available: ")
        assert len(collector.unavailable) > len("not available: ")
        print(collector.unavailable)
        assert frame.empty and list(frame.columns) == ["t"]
        assert summary == {}
        assert collector.cpu_seconds == 0.0
        return
    # a machine with a GPU: real readings from every device
    assert collector.error is None
    assert set(frame["gpu"]) == set(collector.indices)
    assert {"gpu_util_pct", "mem_used_MiB", "power_W", "pcie_rx_MBps"} <= set(frame.columns)
    assert (frame["mem_used_MiB"].dropna() > 0).all()
    assert summary[f"gpu_util_pct[{collector.indices[0]}]"]["direction"] == "higher"
    print(collector.gpus, collector.query_errors, summary)


def test_fixed_rate_schedule_and_quick_stop():
    t0 = time.monotonic()
    collector = make_collectors(
        ["io"], rate_hz=20, root_pid=os.getpid(), dataset_path=Path.cwd(), t0=t0
    )[0]
    started = time.monotonic() - t0
    collector.start()
    time.sleep(1.0)
    asked = time.monotonic()
    collector.stop()
    took = time.monotonic() - asked
    collector.stop()  # idempotent
    frame = collector.frame()
    t = frame["t"].to_numpy()
    print(
        f"{len(t)} samples in 1 s at 20 Hz; stop() took {took * 1000:.1f} ms; "
        f"sampler thread used {100 * collector.cpu_seconds / (asked + took - t0 - started):.2f} "
        "% of a core"
    )
    assert 15 <= len(t) <= 25
    assert (np.diff(t) > 0).all()
    assert t[0] - started < 0.05  # the first sample is taken at once
    # ticks keep their phase: every sample but the final one sits on the 50 ms grid
    phase = (t[:-1] - t[0]) / 0.05
    assert np.abs(phase - np.round(phase)).max() < 0.4
    assert took < 0.5


def test_sampler_cost_is_under_one_percent_of_a_core():
    """io + cpu at 10 Hz on a tree of 5 processes."""
    root = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'])"
            " for _ in range(4)]\n"
            "time.sleep(5)\n",
        ],
        start_new_session=True,  # so that the whole tree can be ended at once
    )
    try:
        time.sleep(0.3)  # let the four children start
        t0 = time.monotonic()
        collectors = make_collectors(
            ["io", "cpu"], rate_hz=10, root_pid=root.pid, dataset_path=Path.cwd(), t0=t0
        )
        began = time.monotonic()
        for collector in collectors:
            collector.start()
        time.sleep(2.0)
        for collector in collectors:
            collector.stop()
        wall = time.monotonic() - began
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()
    assert collectors[0].frame()["procs"].iloc[-1] == 5
    used = sum(collector.cpu_seconds for collector in collectors)
    share = 100 * used / wall
    print(
        f"sampler cost: {share:.3f} % of a core ("
        + ", ".join(f"{c.name} {1000 * c.cpu_seconds:.1f} ms" for c in collectors)
        + f" in {wall:.2f} s)"
    )
    assert all(collector.error is None for collector in collectors)
    assert share <= 1.0


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
