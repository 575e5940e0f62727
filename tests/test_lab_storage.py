"""The harness on network storage, for real (issue 24): the lab's sshfs mount served from one
network namespace to another over a tbf-limited veth link. Cold runs of the quick cached and
collage scenarios read what crossed the link (the pipeline's cache misses, checked against the
interface's byte counter less the protocol's overhead), the storage host's node_exporter gives
the server's view, and capacity at two link rates answers the hand calculation and names the
link. Skips, saying why, where the lab cannot be made (not root, no namespaces, tools missing).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from harness import lab
from harness.lab import plan, system
from harness.lab.state import read_state
from harness.results.capacity_file import read_capacity_file
from harness.results.summary_file import read_summary
from harness.summary import LINK_OVERHEAD

pytestmark = [
    pytest.mark.slow,
    pytest.mark.alone,
]  # the lab's namespaces, link counters and a capacity answer on its link
ROOT = Path(__file__).resolve().parents[1]
MOUNT = plan.mount_point(1)
EXPORTER = "http://10.201.1.1:9100/metrics"
PROFILE = "cpu2-unet-w16-128-fp32-b8"  # the quick U-Net on a 2-core CPU: ~15 samples/s each


def harness(
    *args: object, client: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``harness ARGS`` as a user runs it; in the lab's client namespace unless ``client`` is
    False."""
    command = [sys.executable, "-m", "harness", *map(str, args)]
    if client:
        command = [sys.executable, "-m", "harness", "lab", "exec", "client1", "--", *command]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=cwd or ROOT, check=False
    )


@dataclass(frozen=True)
class Lab:
    export: Path
    device: str  # the block device under the export: the server's disk
    scenarios: Path  # scenario files reading the lab's mount


@pytest.fixture(scope="module")
def lab_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = lab.lab_unavailable()
    if reason:
        pytest.skip(f"lab not available: {reason}")
    if read_state() is not None or system.lab_namespaces():
        pytest.skip("a lab is up already (harness lab down first)")
    work = tmp_path_factory.mktemp("lab")
    export = work / "export"
    try:
        done = harness("lab", "up", "--rate", "200mbit", "--export", export, client=False)
        assert done.returncode == 0, done.stderr
        state = read_state()
        assert state is not None and state.export_device
        scenarios = work / "scenarios"
        scenarios.mkdir()
        for name in ("image_collage", "video_cached"):
            text = (ROOT / "scenarios" / "lab" / f"{name}.yaml").read_text()
            text = text.replace(str(MOUNT), str(MOUNT / "t"))
            text = text.replace("    images: 16\n", "    images: 8\n")  # half: a quicker set-up
            (scenarios / f"{name}.yaml").write_text(text)
        # The data is written on the export side (the storage host's disk), not over the link.
        for name, overrides in (
            ("image_collage", ["-o", f"dataset.path={export}/t/quick/collage"]),
            ("video_cached", ["-o", f"dataset.path={export}/t/quick/videos"]),
        ):
            done = harness("datagen", scenarios / f"{name}.yaml", *overrides, client=False)
            assert done.returncode == 0, done.stderr
        done = harness(
            "cache",
            scenarios / "video_cached.yaml",
            "-o",
            f"dataset.path={export}/t/quick/videos",
            "-o",
            f"pipeline.cache.path={export}/t/quick/frame-cache",
            client=False,
        )
        assert done.returncode == 0, done.stderr
        yield Lab(export, state.export_device, scenarios)
    finally:
        assert lab.down() == []
        assert system.lab_namespaces() == [] and system.mounts_under(plan.MOUNT_ROOT) == []


def server_view() -> list[str]:
    """The storage host's node_exporter scraped: every disk (the export's is the lab's one
    real disk), the storage host's links, its CPU."""
    return [
        "-o",
        "collectors.enabled=[io, cpu, prometheus]",
        "-o",
        f"collectors.prometheus.url={EXPORTER}",
        "-o",
        "collectors.prometheus.interval_s=0.5",
    ]


def cold_run(lab_up: Lab, name: str, tmp_path: Path, *extra: str) -> Path:
    results = tmp_path / "results"
    done = harness(
        "run", lab_up.scenarios / f"{name}.yaml", "--results", results, *extra, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = results.iterdir()
    return folder


def check_read_over_the_link(folder: Path) -> None:
    summary = read_summary(folder / "summary.json")
    root = (summary.storage or [])[-1]
    assert root["fs_type"] == "fuse.sshfs" and root["counted_by"] == "pipeline"
    assert root["server"] == "10.201.1.1" and root["interface"] == "hlc1"
    read = summary.value("read_MBps")
    assert read is not None and read > 0.1  # never 0 MB/s over a network
    check = summary.cross_checks[0]
    assert check["ok"] is True, check["verdict"]
    # the run's read bytes within 5 % of the link's received bytes less the overhead
    overhead = LINK_OVERHEAD["fuse.sshfs"]
    assert check["read_bytes"] == pytest.approx(check["link_rx_bytes"] / (1 + overhead), rel=0.05)
    assert "memory" not in check["verdict"]
    assert summary.value("disk_r_per_s") is None  # no local disk's figures under its name


def test_a_cold_cached_run_reads_what_crossed_the_link_and_the_server_view_shows(
    lab_up: Lab, tmp_path: Path
) -> None:
    folder = cold_run(lab_up, "video_cached", tmp_path, "-o", "training.steps=30", *server_view())
    check_read_over_the_link(folder)
    summary = read_summary(folder / "summary.json")
    assert summary.collectors.server_view == "server"
    series = pd.read_parquet(folder / "series_prometheus.parquet")
    assert any(column.startswith("node_disk_read_bytes_total") for column in series.columns)
    # cold: the export's files were evicted too, so the server's disk served the reads
    assert (summary.value("server_disk_read_MBps") or 0) > 0
    assert (summary.value("server_net_transmit_MBps") or 0) > 0  # what it sent over hls1
    assert summary.value("server_cpu_busy_pct") is not None


def test_a_cold_collage_run_reads_its_memory_mapped_crops_over_the_link(
    lab_up: Lab, tmp_path: Path
) -> None:
    check_read_over_the_link(cold_run(lab_up, "image_collage", tmp_path, "-o", "training.steps=20"))


def hand_calculation(lab_up: Lab, rate_bits: float, per_accelerator: float) -> int:
    """Accelerators the link feeds: its file bytes per second (the rate less the protocol's
    overhead) over the bytes each accelerator asks for per second, at the 90 % busy a count
    needs to pass."""
    cache = lab_up.export / "t" / "quick" / "frame-cache"
    manifest = json.loads((cache / "cache.json").read_text())
    files = [p for p in cache.rglob("*") if p.is_file() and p.name != "cache.json"]
    per_sample = sum(p.stat().st_size for p in files) / manifest["frames"]
    link = rate_bits / 8 / (1 + LINK_OVERHEAD["fuse.sshfs"])
    return math.floor(link / (per_sample * per_accelerator * 0.9))


def test_capacity_on_the_link_answers_the_hand_calculation_and_names_the_link(
    lab_up: Lab, tmp_path: Path
) -> None:
    # 10 Mbit/s feeds two ~0.5 MB/s accelerators (README's hand calculation): the search passes
    # 1 and 2 and fails 3 (at most 3 probed: three probes of ~20 s each). The other rates (5 and
    # 20 Mbit/s) are measured in docs/network-storage.md, not here: each costs the suite a minute.
    done = harness("lab", "rate", "10mbit", client=False)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "capacity.json"
    done = harness(
        "capacity",
        lab_up.scenarios / "video_cached.yaml",
        "--profile",
        PROFILE,
        "--repeat",
        "1",
        "--probe-s",
        "4",
        "--ceiling-s",
        "3",
        "--max-accelerators",
        "3",
        "--results",
        tmp_path / "results",
        "--json",
        out,
        "--quiet",
        *server_view(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (search,) = read_capacity_file(out).scenarios
    first = search.probes[0]
    per_accelerator = (first.metrics.get("samples_per_s") or 0) / max(
        (first.metrics.get("busy_pct") or 100) / 100, 0.01
    )
    expected = hand_calculation(lab_up, 10e6, per_accelerator)
    assert search.max_accelerators is not None
    assert abs(search.max_accelerators - expected) <= 1, (search.max_accelerators, expected)
    assert [probe.verdict for probe in search.probes][-1] == "fail", search.probes
    assert search.limiter == "network link", (search.limiter, search.limiter_evidence)
