"""``harness capacity`` on a storage whose read rate the test sets: a loop device throttled by
the cgroup-v1 blkio controller. The answer must follow the cap, as a hand calculation says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    REPO,
    flat_profile,
    free_port,
    run_harness,
    tiny_collage_scenario,
    tiny_video_scenario,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.alone,
]  # capacity answers checked against a hand calculation under a cap

BLKIO = Path("/sys/fs/cgroup/blkio")
FRAME_BYTES = 320 * 240 * 3 + 320 * 240  # an npy frame and its mask
BATCH, STEP_S = 4, 0.2


@pytest.fixture
def throttled(tmp_path: Path):
    """(mount point, two cgroups, device numbers): an ext4 file system on a loop device whose
    reads each cgroup caps on its own (one token bucket per cgroup)."""
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
    cgroups = [BLKIO / f"harness-test-{os.getpid()}-{k}" for k in range(2)]
    try:
        subprocess.run(["mount", device, str(mount)], check=True)
        for cgroup in cgroups:
            cgroup.mkdir()
        numbers = f"{os.major(os.stat(device).st_rdev)}:{os.minor(os.stat(device).st_rdev)}"
        yield mount, cgroups, numbers
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)
        for cgroup in cgroups:
            if cgroup.exists():
                cgroup.rmdir()


def emulated_training(profile: Path) -> dict:
    """Ten steps of a tiny U-Net's shape, emulated at ``profile``'s step time."""
    return {
        "steps": 10,
        "warmup_steps": 2,
        "model": {"width": 8, "depth": 2},
        "compute": "emulated",
        "profile": str(profile),
    }


def start_capacity(
    cap_MBps: float, scenario: Path, cgroup: Path, numbers: str, out: Path
) -> subprocess.Popen:
    (cgroup / "blkio.throttle.read_bps_device").write_text(f"{numbers} {int(cap_MBps * 1e6)}")
    # The search runs inside the cgroup: every rank and worker it starts inherits the cap.
    command = (
        f"echo $$ > {cgroup}/cgroup.procs && exec {sys.executable} -m harness capacity "
        f"{scenario} --probe-s 3 --repeat 1 --max-accelerators 4 --ceiling-s 2 --quiet "
        f"--results {out / 'results'} --json {out / 'capacity.json'}"
    )
    return subprocess.Popen(
        ["sh", "-c", command], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_capacity_follows_the_storage_cap(tmp_path: Path, throttled, write_scenario) -> None:
    """Two searches at once, each on its own copy of the data under its own cap: a probe's
    emulated steps mostly wait, so they share the two cores without disturbing each other."""
    mount, cgroups, numbers = throttled
    profile = flat_profile(tmp_path / "flat.json", STEP_S)
    searches = {}
    for cap, cgroup in zip((8.0, 16.0), cgroups, strict=True):
        scenario = tiny_video_scenario(
            mount / f"cap{cap:g}",
            dataset__generate__videos=2,
            dataset__generate__frames=500,
            dataset__generate__width=320,
            dataset__generate__height=240,
            dataset__generate__gop=25,
            pipeline__crop=48,
            pipeline__batch_size=BATCH,
            pipeline__workers=1,
        )
        scenario["training"] = emulated_training(profile)
        file = write_scenario(scenario, f"cap{cap:g}.yaml")
        assert run_harness("datagen", str(file)).returncode == 0
        assert run_harness("cache", str(file)).returncode == 0
        out = tmp_path / f"cap{cap:g}"
        searches[cap] = (start_capacity(cap, file, cgroup, numbers, out), out)

    answers = {}
    for cap, (search, out) in searches.items():
        _stdout, stderr = search.communicate(timeout=600)
        assert search.returncode == 0, stderr
        assert "Traceback" not in stderr
        document = json.loads((out / "capacity.json").read_text())
        (entry,) = document["scenarios"]
        answers[cap] = entry["max_accelerators"]
        # By hand: the bytes a sample costs the disk (as the first probe read them) x the
        # samples one accelerator consumes when it never waits = what one accelerator reads.
        first = entry["probes"][0]["metrics"]
        sample_bytes = first["read_MBps"] * 1e6 / first["samples_per_s"]
        assert sample_bytes == pytest.approx(FRAME_BYTES, rel=0.35)
        demand = sample_bytes * BATCH / STEP_S / 1e6
        by_hand = int(cap // demand)  # whole accelerators the cap feeds
        assert abs(answers[cap] - by_hand) <= 1, (cap, demand, entry["probes"])
        assert entry["ceiling_MBps"] == pytest.approx(cap, rel=0.35)  # measured under the cap
        failing = [p for p in entry["probes"] if p["verdict"] == "fail"]
        assert failing and failing[0]["limiter"] == "storage", entry["probes"]
        assert document["complete"] and document["format_version"] == 1
    assert answers[16.0] >= answers[8.0] + 1, answers


def test_two_hosts_search_together_under_torchrun(tmp_path: Path, write_scenario) -> None:
    """One controller per host (two launcher "nodes" on this machine, a static rendezvous with
    explicit node ranks): the first decides each count, every host launches its share of one
    job, and the first gathers their results."""
    profile = flat_profile(tmp_path / "flat.json", 0.02)
    scenario = tiny_collage_scenario(tmp_path, pipeline__batch_size=4, pipeline__crop=48)
    scenario["training"] = emulated_training(profile)
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    port = str(free_port())
    controllers = [
        subprocess.Popen(
            [
                sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                "--nproc-per-node", "1", "--rdzv-backend", "static", "--master-addr",
                "127.0.0.1", "--master-port", port, "--node-rank", str(node), "-m", "harness",
                "capacity", str(file), "--probe-s", "3", "--repeat", "1", "--ceiling-s", "1",
                "--max-accelerators", "1", "--min-busy", "50", "--min-busy-each", "40",
                "--results", str(tmp_path / "results"), "--json", str(tmp_path / "c.json"),
                "--quiet",
            ],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for node in (0, 1)
    ]  # fmt: skip
    outputs = [c.communicate(timeout=300) for c in controllers]
    for controller, (_out, err) in zip(controllers, outputs, strict=True):
        assert controller.returncode == 0, err[-2000:]
    sentence = "these 2 clients feed at least 1 emulated test accelerator(s) each (2 in all)"
    assert sentence in outputs[0][0]
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["hosts"] == 2
    (entry,) = document["scenarios"]
    assert len(entry["hosts"]) == 2 and entry["max_accelerators"] == 1 and entry["capped"]
    assert [p["accelerators_total"] for p in entry["probes"]] == [2]
    ranks = []
    for host in entry["probes"][-1]["hosts"]:
        steps = pd.read_parquet(Path(host["run"]) / "steps.parquet")
        ranks.append(sorted(steps["rank"].unique()))
    assert sorted(ranks) == [[0], [1]]  # one job: each host's share of the global ranks


def test_a_suite_with_a_capacity_key_searches_instead_of_running(
    tmp_path: Path, write_scenario
) -> None:
    profile = flat_profile(tmp_path / "flat.json", 0.02)
    scenario = tiny_collage_scenario(tmp_path, pipeline__batch_size=4, pipeline__crop=48)
    scenario["training"] = {"steps": 10, "warmup_steps": 2, "model": {"width": 8, "depth": 2}}
    write_scenario(scenario, "collage.yaml")
    suite = write_scenario(
        {
            "name": "tiny-capacity",
            "scenarios": ["collage.yaml"],
            "capacity": {
                "profile": str(profile),
                "max_accelerators": 1,
                "probe_s": 2,
                "repeat": 1,
                "ceiling_s": 1,
                "min_busy": 50,
                "min_busy_each": 40,
            },
        },
        "suite.yaml",
    )
    report = tmp_path / "report"
    done = run_harness(
        "suite", str(suite), "--results", str(tmp_path / "results"), "--report", str(report)
    )
    assert done.returncode == 0, done.stderr
    assert "feed at least 1 emulated test accelerator(s)" in done.stdout
    document = json.loads((report / "capacity.json").read_text())
    (entry,) = document["scenarios"]
    assert entry["profile"]["profile"] == "flat-20ms" and len(entry["probes"]) == 1
    assert "Capacity" in (report / "report.html").read_text()


def test_an_interrupted_search_keeps_its_probes_and_says_where_it_stopped(
    tmp_path: Path, write_scenario
) -> None:
    profile = flat_profile(tmp_path / "flat.json", 0.02)
    scenario = tiny_collage_scenario(tmp_path, pipeline__batch_size=4, pipeline__crop=48)
    scenario["training"] = emulated_training(profile)
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    out = tmp_path / "c.json"
    search = subprocess.Popen(
        [
            sys.executable, "-m", "harness", "capacity", str(file), "--probe-s", "5",
            "--repeat", "1", "--ceiling-s", "1", "--max-accelerators", "2", "--min-busy", "10",
            "--min-busy-each", "5", "--results", str(tmp_path / "results"), "--json", str(out),
            "--quiet",
        ],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            out.exists() and json.loads(out.read_text())["scenarios"][0]["probes"]
        ):
            time.sleep(0.5)
        time.sleep(3)  # into the second probe (2 accelerators, 5 s measured after start-up)
        search.send_signal(signal.SIGINT)
        _stdout, stderr = search.communicate(timeout=90)
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode == 130, stderr
    assert "Traceback" not in stderr
    document = json.loads(out.read_text())
    assert document["complete"] is False
    assert document["stopped"] == "interrupted during the probe of 2 accelerators"
    probes = document["scenarios"][0]["probes"]
    assert [p["accelerators"] for p in probes] == [1, 2]  # the first kept, the second partial
    assert probes[0]["verdict"] == "pass" and probes[1]["complete"] is False
    assert Path(probes[1]["run"], "summary.json").exists()  # the partial run is kept too


def test_json_dash_prints_capacity_json_on_stdout(tmp_path: Path, write_scenario) -> None:
    """``--json -``: the document on stdout, the progress lines on stderr, the file kept in the
    default place."""
    profile = flat_profile(tmp_path / "flat.json", 0.02)
    scenario = tiny_collage_scenario(tmp_path, pipeline__batch_size=4, pipeline__crop=48)
    scenario["training"] = emulated_training(profile)
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    done = run_harness(
        "capacity", str(file), "--probe-s", "2", "--repeat", "1", "--ceiling-s", "1",
        "--max-accelerators", "1", "--min-busy", "10", "--min-busy-each", "5", "--quiet",
        "--results", str(tmp_path / "results"), "--json", "-", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    (kept,) = (tmp_path / "reports").glob("*-capacity/capacity.json")
    assert json.loads(kept.read_text()) == document and document["complete"]
    assert f"capacity: {kept.relative_to(tmp_path)}" in done.stderr
    assert "feed at least 1 emulated test accelerator(s)" in done.stderr
