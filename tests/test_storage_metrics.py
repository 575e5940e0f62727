"""The storage's story: iostat -x's read figures from /proc/diskstats, checked against iostat
itself on a real device, and an NFS mount's READ figures from /proc/self/mountstats, checked on
texts captured from NFS clients (tests/data/mountstats/SOURCE.md names them)."""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO

from harness.collect import diskstats, mountstats
from harness.collect.procio import IoCollector

CAPTURED = REPO / "tests" / "data" / "mountstats"


@pytest.fixture
def loop_device(tmp_path: Path):
    """A loop device over a 16 MiB file: a real block device that only this test reads."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup for a loop device")
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(16 << 20))
    found = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"losetup: {found.stderr.strip()}")
    device = found.stdout.strip()
    _wait_until_quiet(lambda: _counters(os.path.basename(device)))  # udev may probe a new device
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def _counters(name: str) -> diskstats.DiskCounters:
    return diskstats.parse_diskstats(Path("/proc/diskstats").read_text())[name]


def _wait_until_quiet(
    read: Callable[[], object], still_s: float = 0.15, limit_s: float = 3
) -> None:
    """Until what ``read`` returns has not changed for ``still_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < still_s:
        time.sleep(0.02)
        now = read()
        if now != last:
            last, since = now, time.monotonic()


def _rchar(pid: int) -> int:
    text = Path(f"/proc/{pid}/io").read_text()
    return int(text.split("rchar:")[1].split()[0])


def _read_direct(device: str, sizes: list[int]) -> None:
    """O_DIRECT reads of the given sizes at spread offsets, so that none is merged or cached."""
    fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, max(sizes))
    try:
        for index, size in enumerate(sizes):
            os.preadv(fd, [memoryview(buffer)[:size]], (index * 3 % 64) << 18)
    finally:
        os.close(fd)
        buffer.close()


def test_read_figures_match_iostat_over_the_same_interval(loop_device: str) -> None:
    """iostat -x samples /proc/diskstats at its start and after its interval; the reads all fall
    inside it and the device sees no others, so both see the same counters: the per-read figures
    agree to iostat's printed precision, the rates to that and to the interval (iostat's comes
    from /proc/uptime in 1/100 s)."""
    if shutil.which("iostat") is None:
        pytest.skip("needs iostat (apt-get install sysstat; `make system-tools`)")
    name = os.path.basename(loop_device)
    before = _counters(name)
    interval = 2
    iostat = subprocess.Popen(
        ["iostat", "-x", "-y", "-d", "-o", "JSON", name, str(interval), "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    # iostat reads its first sample, then sleeps: wait until it has stopped reading
    _wait_until_quiet(lambda: _rchar(iostat.pid))
    _read_direct(loop_device, [4096] * 40 + [65536] * 30 + [16384] * 20)
    out, _ = iostat.communicate(timeout=30)
    after = _counters(name)
    (reported,) = json.loads(out)["sysstat"]["hosts"][0]["statistics"][0]["disk"]
    delta = after.minus(before)
    assert delta.reads >= 90  # every read reached the device
    ours = diskstats.read_metrics(delta, interval)
    assert ours["rareq_sz_kB"] == pytest.approx(reported["rareq-sz"], abs=0.006)
    assert ours["r_await_ms"] == pytest.approx(reported["r_await"], abs=0.006)
    assert reported["r/s"] > 0
    for key, column in (
        ("r_per_s", "r/s"),
        ("rkB_per_s", "rkB/s"),
        ("rrqm_per_s", "rrqm/s"),
        ("aqu_sz", "aqu-sz"),
        ("util_pct", "util"),
    ):
        # 1 % for iostat's interval (2.00 s +- 1/100 s), 0.006 for its two decimals
        assert ours[key] == pytest.approx(reported[column], rel=0.011, abs=0.006), key


def test_the_collector_reports_them_for_the_dataset_device_and_the_nfs_mount(
    loop_device: str, tmp_path: Path
) -> None:
    """The io collector keeps the counters of the dataset's device (here the loop device, named
    as the run would find it) and of its NFS mount (a captured mountstats text, its counters
    grown between two samples as a reader's would), and its summary gives their figures over
    the measured window."""
    captured = (CAPTURED / "procfs-nfs4.txt").read_text()
    stats_file = tmp_path / "mountstats"
    stats_file.write_text(captured)
    collector = IoCollector(
        rate_hz=10,
        t0=time.monotonic(),
        root_pid=os.getpid(),
        dataset_path=tmp_path,
        nfs_mount="/mnt/nfs/test",
        mountstats_path=str(stats_file),
    )
    collector.device = os.path.basename(loop_device)  # as locate_device names it
    collector._device_key = f" {collector.device} ".encode()
    collector._sample()
    _read_direct(loop_device, [8192] * 25)
    grown = captured.replace(
        "READ: 1298 1298 0 207680 1210292152 6 79386 79407",
        "READ: 1398 1401 1 223680 1315149752 8 80386 80607",
    ).replace("1207640230 0 0 0 1210214218", "1312497830 0 0 0 1315071818")
    stats_file.write_text(grown)
    time.sleep(0.05)
    collector._sample()
    frame = collector.frame()
    seconds = frame["t"].iloc[1] - frame["t"].iloc[0]
    found = collector.summary(frame["t"].iloc[0], frame["t"].iloc[1])
    assert found["disk_r_per_s"]["value"] == pytest.approx(25 / seconds)
    assert found["disk_rareq_KiB"]["value"] == pytest.approx(8.0)
    assert found["disk_rKiB_per_s"]["unit"] == "KiB/s"
    assert all(found[name]["direction"] == "context" for name in found)
    assert 0 <= found["disk_util_pct"]["value"] <= 100
    assert found["nfs_read_ops_per_s"]["value"] == pytest.approx(100 / seconds)
    assert found["nfs_read_MBps"]["value"] == pytest.approx(104857600 / seconds / 1e6)
    assert found["nfs_read_rtt_ms"]["value"] == pytest.approx(10.0)  # 1000 ms / 100 ops
    assert found["nfs_read_exe_ms"]["value"] == pytest.approx(12.0)
    assert found["nfs_read_retrans"]["value"] == 3
    assert found["nfs_read_major_timeouts"]["value"] == 1
    collector.stop()


def test_mountstats_parser_on_captured_texts() -> None:
    """The values Prometheus' procfs tests expect of the same texts."""
    mounts = mountstats.parse_mountstats((CAPTURED / "procfs-nfs4.txt").read_text())
    assert list(mounts) == ["/mnt/nfs/test"]  # rootfs, sysfs, proc, ext4: not NFS
    mount = mounts["/mnt/nfs/test"]
    assert (mount.device, mount.fstype, mount.statvers) == ("192.168.1.1:/srv/test", "nfs4", "1.1")
    assert mount.server_read_bytes == 1210214218
    assert mount.ops["READ"] == mountstats.OpCounters(
        1298, 1298, 0, 207680, 1210292152, 6, 79386, 79407, None
    )
    assert mount.ops["ACCESS"].queue_ms == 18446743919241604546  # a u64 as the kernel printed it
    rdma = mountstats.parse_mountstats((CAPTURED / "procfs-rdma.txt").read_text())["<mountpoint>"]
    assert rdma.fstype == "nfs" and rdma.ops["NULL"].errors == 0
    assert rdma.server_read_bytes == 2013200952170479
    counters = mountstats.NfsReadCounters.of(rdma)  # no READ line yet: zero reads, not an error
    assert counters.ops == 0 and counters.server_read_bytes == 2013200952170479
    escaped = "device srv:/a mounted on /mnt/my\\040data with fstype nfs statvers=1.1\n"
    assert list(mountstats.parse_mountstats(escaped)) == ["/mnt/my data"]
    with pytest.raises(ValueError, match="mountstats line 2"):
        mountstats.parse_mountstats(escaped + "\tbytes:\t1 x 3\n")


def test_read_figures_arithmetic() -> None:
    """The formulas on round numbers: 200 reads of 800 sectors (400 KiB) in 2 s, 600 ms reading,
    1500 ms busy, 3000 ms weighted queue time."""
    found = diskstats.read_metrics(diskstats.DiskCounters(200, 50, 160_000, 600, 1500, 3000), 2.0)
    assert found == {
        "r_per_s": 100.0,
        "rkB_per_s": 40_000.0,
        "rrqm_per_s": 25.0,
        "rareq_sz_kB": 400.0,
        "r_await_ms": 3.0,
        "aqu_sz": 1.5,
        "util_pct": 75.0,
    }
    idle = diskstats.read_metrics(diskstats.DiskCounters(0, 0, 0, 0, 0, 0), 1.0)
    assert idle["r_await_ms"] is None and idle["rareq_sz_kB"] is None  # not measured, not 0
    nfs = mountstats.read_metrics(mountstats.NfsReadCounters(0, 0, 0, 0, 0, 0), 1.0)
    assert nfs["read_rtt_ms"] is None and nfs["read_ops_per_s"] == 0


def test_summary_lines_tell_the_storage_story() -> None:
    from harness.results import SummaryFile
    from harness.results.summary_file import Metric
    from harness.stats import metric
    from harness.summary_lines import storage_lines

    metrics = {
        "disk_r_per_s": metric(45.0, "reads/s", "context"),
        "disk_rKiB_per_s": metric(1200.0, "KiB/s", "context"),
        "disk_r_await_ms": metric(None, "ms", "context"),  # not measured: left out
        "disk_util_pct": metric(0.6, "%", "context"),
    }
    summary = SummaryFile.model_validate(
        {
            "run_id": "run-1",
            "scenario": "s",
            "complete": True,
            "metrics": metrics,
            "collectors": {"io_device": "nvme0n1"},
        }
    )
    assert storage_lines(summary) == ["  disk nvme0n1: r/s 45.0, rkB/s 1200 KiB/s, %util 0.6 %"]
    summary.metrics["nfs_read_rtt_ms"] = Metric(value=1.25, unit="ms", direction="context")
    assert storage_lines(summary)[-1] == "  nfs mount: avg RTT 1.25 ms"


def test_the_report_storage_section_has_the_device_table(tmp_path: Path) -> None:
    """The report's storage section: the iostat table from the runs' summaries; the NFS table
    only where a run measured an NFS mount."""
    from conftest import copy_golden

    from harness.report.content import NOT_MEASURED
    from harness.report.runs import load_runs
    from harness.report.sections_figures import storage_tables
    from harness.stats import metric

    run = copy_golden("collage", tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    # the golden run's own disk figures (whatever its machine measured) give way to known ones
    summary["metrics"] = {k: v for k, v in summary["metrics"].items() if not k.startswith("disk_")}
    summary["metrics"]["disk_r_per_s"] = metric(45.0, "reads/s", "context")
    summary["metrics"]["disk_r_await_ms"] = metric(0.12, "ms", "context")
    summary["collectors"]["io_device"] = "nvme0n1"
    (run / "summary.json").write_text(json.dumps(summary))
    tables = storage_tables(load_runs([run]))  # the storage section's tables, after its charts
    assert [t.id for t in tables] == ["table-device"]
    (row,) = tables[0].rows
    assert row[1] == "nvme0n1" and row[2] == "45.00" and "0.12" in row[5]
    assert tables[0].columns[3] == "rkB/s (KiB/s)" and row[3] == NOT_MEASURED  # never 0


def test_compare_shows_the_storage_figures_as_context(cli, tmp_path: Path) -> None:
    """A device twice as busy is a fact to read beside the verdicts, never a regression."""
    from conftest import copy_golden

    from harness.stats import metric

    sides = []
    for name, util in (("base", 40.0), ("current", 80.0)):
        run = copy_golden("collage", tmp_path / name)
        summary = json.loads((run / "summary.json").read_text())
        summary["metrics"]["disk_util_pct"] = metric(util, "%", "context")
        summary["metrics"]["nfs_read_rtt_ms"] = metric(util / 10, "ms", "context")
        (run / "summary.json").write_text(json.dumps(summary))
        sides.append(run)
    done = cli("compare", *sides, "--json", "-")
    assert done.returncode == 0, done.stderr
    rows = {m["metric"]: m for m in json.loads(done.stdout)["scenarios"][0]["metrics"]}
    assert rows["disk_util_pct"]["verdict"] == "context"
    assert rows["disk_util_pct"]["change_pct"] == pytest.approx(100.0)
    assert rows["nfs_read_rtt_ms"]["verdict"] == "context"
