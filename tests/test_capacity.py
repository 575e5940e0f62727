"""``harness capacity`` on a storage whose read rate the test sets: a loop device throttled by
the cgroup-v1 blkio controller. The answer must follow the cap, as a hand calculation says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_harness, tiny_video_scenario

pytestmark = pytest.mark.slow

BLKIO = Path("/sys/fs/cgroup/blkio")
FRAME_BYTES = 320 * 240 * 3 + 320 * 240  # an npy frame and its mask
BATCH, STEP_S = 4, 0.2


@pytest.fixture
def throttled(tmp_path: Path):
    """(mount point, cgroup): an ext4 file system on a loop device whose reads the cgroup caps."""
    if os.geteuid() != 0 or not (BLKIO / "blkio.throttle.read_bps_device").exists():
        pytest.skip("needs root and the cgroup-v1 blkio controller")
    if shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs losetup and mkfs.ext4")
    image, mount = tmp_path / "disk.img", tmp_path / "store"
    subprocess.run(["truncate", "-s", "700M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip(f"no loop device: {loop.stderr.strip()}")
    device = loop.stdout.strip()
    mount.mkdir()
    cgroup = BLKIO / f"harness-test-{os.getpid()}"
    try:
        subprocess.run(["mount", device, str(mount)], check=True)
        cgroup.mkdir()
        numbers = f"{os.major(os.stat(device).st_rdev)}:{os.minor(os.stat(device).st_rdev)}"
        yield mount, cgroup, numbers
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)
        if cgroup.exists():
            cgroup.rmdir()


def capacity_at(cap_MBps: float, scenario: Path, cgroup: Path, numbers: str, out: Path) -> dict:
    (cgroup / "blkio.throttle.read_bps_device").write_text(f"{numbers} {int(cap_MBps * 1e6)}")
    # The search runs inside the cgroup: every rank and worker it starts inherits the cap.
    command = (
        f"echo $$ > {cgroup}/cgroup.procs && exec {sys.executable} -m harness capacity "
        f"{scenario} --probe-s 4 --repeat 1 --max-accelerators 4 --ceiling-s 4 --quiet "
        f"--results {out / 'results'} --json {out / 'capacity.json'}"
    )
    done = subprocess.run(
        ["sh", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads((out / "capacity.json").read_text())


def test_capacity_follows_the_storage_cap(tmp_path: Path, throttled, write_scenario) -> None:
    mount, cgroup, numbers = throttled
    scenario = tiny_video_scenario(
        mount,
        dataset__generate__videos=2,
        dataset__generate__frames=500,
        dataset__generate__width=320,
        dataset__generate__height=240,
        dataset__generate__gop=25,
        pipeline__crop=48,
        pipeline__batch_size=BATCH,
        pipeline__workers=1,
    )
    profile = tmp_path / "flat.json"
    profile.write_text(
        json.dumps(
            {
                "format": "harness-profile",
                "format_version": 1,
                "name": "flat-200ms",
                "device": "test",
                "settings": {
                    "batch_size": BATCH,
                    "crop": 48,
                    "width": 8,
                    "depth": 2,
                    "classes": 4,
                    "precision": "fp32",
                    "optimizer": "adamw",
                },
                "mean_step_s": STEP_S,
                "step_s": [STEP_S],
                "how": "by hand, for a test",
            }
        )
    )
    scenario["training"] = {
        "steps": 10,
        "warmup_steps": 2,
        "model": {"width": 8, "depth": 2},
        "compute": "emulated",
        "profile": str(profile),
    }
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    assert run_harness("cache", str(file)).returncode == 0

    answers = {}
    for cap in (8.0, 16.0):
        document = capacity_at(cap, file, cgroup, numbers, tmp_path / f"cap{cap:g}")
        (entry,) = document["scenarios"]
        answers[cap] = entry["max_accelerators"]
        # By hand: the bytes a sample costs (as the first probe asked for them) x the samples
        # one accelerator consumes when it never waits = what one accelerator reads per second.
        first = entry["probes"][0]["metrics"]
        sample_bytes = first["requested_MBps"] * 1e6 / first["samples_per_s"]
        assert sample_bytes == pytest.approx(FRAME_BYTES, rel=0.2)
        demand = sample_bytes * BATCH / STEP_S / 1e6
        by_hand = int(cap // demand)  # whole accelerators the cap feeds
        assert abs(answers[cap] - by_hand) <= 1, (cap, demand, entry["probes"])
        assert entry["ceiling_MBps"] == pytest.approx(cap, rel=0.35)  # measured under the cap
        failing = [p for p in entry["probes"] if p["verdict"] == "fail"]
        assert failing and failing[0]["limiter"] == "storage", entry["probes"]
        assert document["complete"] and document["format_version"] == 1
    assert answers[16.0] >= answers[8.0] + 1, answers
