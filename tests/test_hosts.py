"""A job across two hosts: two network namespaces joined by a veth pair, a torchrun in each
(c10d and static rendezvous), one merged result on the first; a host killed or stopped mid-run
ends it within ``collective_timeout_s`` + 5 s, named, with nothing judged."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, copy_golden, flat_profile, run_harness, tiny_collage_scenario

from harness.scenario.model import Thresholds
from harness.summary import (
    JobHosts,
    RankRecords,
    collector_metrics,
    host_figure,
    lost_host_sentence,
    threshold_verdicts,
)
from harness.train.distributed import HostIdentity, missing_at_join

pytestmark = pytest.mark.alone  # hosts in network namespaces of fixed names, lost on a schedule


@dataclass(frozen=True)
class Host:
    namespace: str
    interface: str
    address: str


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Two namespaces of this test's own (named after its pid), always removed."""
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns")
    tag = f"{os.getpid() % 100000}"
    subnet = f"10.226.{os.getpid() % 250}"
    hosts = (
        Host(f"h26a{tag}", f"v26a{tag}", f"{subnet}.1"),
        Host(f"h26b{tag}", f"v26b{tag}", f"{subnet}.2"),
    )
    made = []
    try:
        for host in hosts:
            added = _ip("netns", "add", host.namespace)
            if added.returncode != 0:
                pytest.skip(f"ip netns add: {added.stderr.strip()}")
            made.append(host.namespace)
        a, b = hosts
        link = _ip(
            "link", "add", a.interface, "netns", a.namespace, "type", "veth",
            "peer", "name", b.interface, "netns", b.namespace,
        )  # fmt: skip
        assert link.returncode == 0, link.stderr
        for host in hosts:
            for command in (
                ("addr", "add", f"{host.address}/24", "dev", host.interface),
                ("link", "set", host.interface, "up"),
                ("link", "set", "lo", "up"),
            ):
                done = _ip("-n", host.namespace, *command)
                assert done.returncode == 0, done.stderr
        yield hosts
    finally:
        for namespace in made:
            _ip("netns", "delete", namespace)


def _scenario(tmp_path: Path, write_scenario, **training) -> Path:
    scenario = tiny_collage_scenario(
        tmp_path,
        pipeline__workers=0,
        dataset__generate__width=320,
        dataset__generate__height=256,
        training__eval_samples=0,
    )
    scenario["training"].update(training)
    path = write_scenario(scenario)
    for command in ("datagen", "cache"):
        done = run_harness(command, str(path))
        assert done.returncode == 0, done.stderr
    return path


def _torchrun(
    host: Host,
    node_rank: int,
    first: Host,
    rendezvous: str,
    path: Path,
    results: Path,
    command: tuple[str, ...] = ("run",),
    options: tuple[str, ...] = (),
) -> subprocess.Popen:
    """This host's torchrun (one rank) in its namespace, in a session of its own, running
    ``harness COMMAND path --results results OPTIONS``."""
    port = str(29600 + os.getpid() % 300)
    if rendezvous == "c10d":
        flags = [
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{first.address}:{port}",
            "--rdzv-id", "h26", "--local-addr", host.address,
            "--rdzv-conf", f"join_timeout=60{',is_host=1' if node_rank == 0 else ''}",
        ]  # fmt: skip
    else:
        flags = [
            "--master-addr", first.address, "--master-port", port,
            "--node-rank", str(node_rank),
        ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": host.interface,
        "HARNESS_HOST_NAME": f"client{node_rank + 1}",
        "HARNESS_STREAM_MAX_AGE_S": "1",  # steps on disk at once: the test sees them start
    }
    command = [
        "ip", "netns", "exec", host.namespace,
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        *flags, "-m", "harness", *command, str(path), "--results", str(results), "--quiet",
        *options,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                queue.extend(int(c) for c in (task / "children").read_text().split())
    return found


def _signal_tree(pid: int, sig: signal.Signals) -> None:
    for member in _tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


def _summary(results: Path) -> dict:
    (folder,) = [p for p in results.iterdir() if p.is_dir()]
    return json.loads((folder / "summary.json").read_text())


def _started(results: Path, steps: int = 1, timeout_s: float = 60) -> None:
    """Wait until the first host's run has streamed ``steps`` steps (rows at most 1 s old)."""
    import pyarrow.parquet as pq

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        paths = list(results.glob("*/stream/steps-rank0-*.parquet"))
        if sum(pq.read_metadata(path).num_rows for path in paths) >= steps:
            return
        time.sleep(0.2)
    raise AssertionError(f"the run never streamed {steps} steps")


@pytest.mark.slow
@pytest.mark.parametrize("rendezvous", ["c10d", "static"])
def test_two_hosts_merge_into_one_result(
    tmp_path: Path, write_scenario, two_hosts, rendezvous: str
) -> None:
    first, second = two_hosts
    path = _scenario(tmp_path, write_scenario, steps=6)
    results = tmp_path / "r"
    runs = [
        _torchrun(host, n, first, rendezvous, path, results) for n, host in enumerate(two_hosts)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    summary = _summary(results)
    print(f"{rendezvous}: {summary['metrics']['samples_per_s']['value']:.1f} samples/s")
    assert summary["complete"] and summary["ranks"] == 2 and summary["missing_ranks"] == []
    hosts = summary["hosts"]
    assert [(h["name"], h["address"], h["node_rank"], h["ranks"]) for h in hosts] == [
        ("client1", first.address, 0, [0]),
        ("client2", second.address, 1, [1]),
    ]
    assert not any(h["lost"] for h in hosts) and all(h["samples_per_s"] for h in hosts)
    assert summary["metrics"]["samples_per_s"]["scope"] == "job"
    assert summary["metrics"]["read_MBps"]["scope"] == summary["metrics"]["read_bytes"]["scope"]


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["kill", "stop"])
def test_a_lost_host_ends_the_run_named_and_judges_nothing(
    tmp_path: Path, write_scenario, two_hosts, how: signal.Signals
) -> None:
    first, second = two_hosts
    timeout_s = 5
    path = _scenario(
        tmp_path, write_scenario, steps=None, duration_s=120, collective_timeout_s=timeout_s
    )
    path.write_text(path.read_text() + "thresholds:\n  min_samples_per_s: 0.001\n")
    results = tmp_path / "r"
    runs = [_torchrun(h, n, first, "static", path, results) for n, h in enumerate(two_hosts)]
    try:
        # past the warm-up (2 steps): the surviving host has measured steps to report, however
        # slowly a loaded machine runs them
        _started(results, steps=6)
        _signal_tree(runs[1].pid, how)
        lost_at = time.monotonic()
        _out, err = runs[0].communicate(timeout=60)
        took = time.monotonic() - lost_at
    finally:
        _signal_tree(runs[1].pid, signal.SIGKILL)
        runs[1].communicate(timeout=30)
    print(f"{how.name}: the first host exited {runs[0].returncode} after {took:.1f} s")
    assert runs[0].returncode == 1, err
    assert took <= timeout_s + 5, took
    summary = _summary(results)
    assert not summary["complete"]
    assert f"host client2 ({second.address}, node rank 1) lost at step" in summary["reason"]
    assert summary["ranks"] == 2 and summary["missing_ranks"] == [1]
    assert [h["lost"] for h in summary["hosts"]] == [False, True]
    assert summary["hosts"][0]["samples_per_s"] > 0  # what the surviving host measured
    (verdict,) = summary["thresholds"]
    assert verdict["pass"] is None and verdict["reason"].startswith("not judged: host client2")


@pytest.mark.slow
def test_a_host_lost_during_a_capacity_probe_ends_the_search_in_one_line(
    tmp_path: Path, write_scenario, two_hosts
) -> None:
    """Two controllers search together; the second host is killed during the second probe (the
    repeat of the first count, one accelerator per host: the least there is to start): the first
    ends the search in one line, capacity.json names the host and the probe and keeps the first
    probe."""
    first, second = two_hosts
    timeout_s = 5
    profile = flat_profile(tmp_path / "flat.json", 0.02)
    scenario = tiny_collage_scenario(tmp_path, pipeline__batch_size=4, pipeline__crop=48)
    scenario["training"] = {
        "steps": 10,
        "warmup_steps": 2,
        "model": {"width": 8, "depth": 2},
        "profile": str(profile),
        "collective_timeout_s": timeout_s,
    }
    path = write_scenario(scenario)
    assert run_harness("datagen", str(path)).returncode == 0
    out = tmp_path / "capacity.json"
    options = (
        "--probe-s", "2", "--repeat", "2", "--ceiling-s", "0.5", "--max-accelerators", "1",
        "--min-busy", "1", "--min-busy-each", "1", "--json", str(out),
    )  # fmt: skip
    results = [tmp_path / "r0", tmp_path / "r1"]
    searches = [
        _torchrun(h, n, first, "static", path, results[n], ("capacity",), options)
        for n, h in enumerate(two_hosts)
    ]
    try:
        _probing(results[1], probe=2)
        time.sleep(1)  # well inside the probe: its ranks are stepping
        _signal_tree(searches[1].pid, signal.SIGKILL)
        lost_at = time.monotonic()
        output, err = searches[0].communicate(timeout=60)
        took = time.monotonic() - lost_at
    finally:
        _signal_tree(searches[1].pid, signal.SIGKILL)
        searches[1].communicate(timeout=30)
    print(f"capacity: the first host exited {searches[0].returncode} after {took:.1f} s")
    assert searches[0].returncode == 1, err
    # the probe's ranks wait up to the collective timeout, then the heartbeats tell who is gone
    assert took <= timeout_s + 8, took
    assert "[rank0]: Traceback" not in err, err  # torchrun prints its own on exit 1
    lost = f"host client2 ({second.address}, node rank 1) lost during probe 2 (1 accelerator)"
    assert lost in output + err
    document = json.loads(out.read_text())
    assert document["stopped"].startswith(lost) and not document["complete"]
    (entry,) = document["scenarios"]
    assert [p["accelerators"] for p in entry["probes"]] == [1]  # the probe before is kept
    assert [h["address"] for h in entry["probes"][0]["hosts"]] == [first.address, second.address]
    assert [(h["host"], h["address"], h["node_rank"]) for h in entry["hosts"]] == [
        ("client1", first.address, 0),
        ("client2", second.address, 1),
    ]


def _probing(results: Path, probe: int, timeout_s: float = 60) -> None:
    """Wait until this host's ``probe``-th probe has started (its run folder has a manifest)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(list(results.glob("*/manifest.json"))) >= probe:
            return
        time.sleep(0.2)
    raise AssertionError(f"probe {probe} never started")


def _job() -> JobHosts:
    """Two hosts sharing a name (namespaces), two ranks each; the second host lost."""
    joined = [
        HostIdentity("vm", "10.0.0.1", 0, 0),
        HostIdentity("vm", "10.0.0.1", 0, 1),
        HostIdentity("vm", "10.0.0.2", 1, 2),
        HostIdentity("vm", "10.0.0.2", 1, 3),
    ]
    return JobHosts(joined, silent=[2, 3])


def _part(rank: int, counted_by: str, **figures: float) -> RankRecords:
    metrics = {
        name: {"value": v, "unit": "MB/s", "direction": "context"} for name, v in figures.items()
    }
    return RankRecords(rank, [], [], collector_metrics=metrics, io_mount={"counted_by": counted_by})


def test_hosts_are_told_apart_by_address_and_node_rank_and_a_lost_one_is_named() -> None:
    job = _job()
    assert [[i.rank for i in group] for group in job.groups()] == [[0, 1], [2, 3]]
    steps = pd.DataFrame({"step": [0, 1, 2], "rank": [0, 0, 0]})
    assert lost_host_sentence(job, steps) == (
        "host vm (10.0.0.2, node rank 1) lost at step 3: rank(s) 2, 3 sent nothing"
    )
    one_rank = JobHosts(job.joined, silent=[3])
    assert lost_host_sentence(one_rank, steps).startswith("rank(s) 3 of host vm (10.0.0.2")
    assert lost_host_sentence(JobHosts(job.joined), steps) is None


def test_no_threshold_passes_when_a_host_was_lost() -> None:
    metrics = {"samples_per_s": {"value": 50.0}}
    thresholds = Thresholds(min_samples_per_s=10)
    (judged,) = threshold_verdicts(thresholds, metrics)
    assert judged["pass"] is True and "reason" not in judged
    (verdict,) = threshold_verdicts(thresholds, metrics, not_judged="host vm lost at step 3")
    assert verdict["pass"] is None and verdict["reason"] == "not judged: host vm lost at step 3"


def test_read_figures_are_summed_over_hosts_never_over_one_hosts_ranks() -> None:
    # FUSE/network mounts: a host-wide miss counter that each host's local rank 0 reports
    fuse = [_part(0, "pipeline", read_MBps=5.0), _part(1, "pipeline"),
            _part(2, "pipeline", read_MBps=3.0), _part(3, "pipeline")]  # fmt: skip
    metrics = collector_metrics(fuse, JobHosts(_job().joined))
    assert metrics["read_MBps"]["value"] == 8.0 and metrics["read_MBps"]["scope"] == "job"
    # NFS mount counters are host-wide too, though every rank reports them
    nfs = [_part(r, "nfs", read_MBps=4.0) for r in range(4)]
    assert collector_metrics(nfs, JobHosts(_job().joined))["read_MBps"]["value"] == 8.0
    # block devices: each rank counts its own process tree
    block = [_part(r, "block", read_MBps=1.0, cpu_pct=10.0) for r in range(4)]
    metrics = collector_metrics(block, JobHosts(_job().joined))
    assert metrics["read_MBps"]["value"] == 4.0
    assert metrics["cpu_pct"]["scope"] == "host" and metrics["cpu_pct[rank1]"]["scope"] == "host"
    assert host_figure(fuse[2:], "read_MBps") == 3.0


LOST = "host client2 (10.0.0.2, node rank 1) lost at step 32: rank(s) 1 sent nothing"


def _lost_host_run(folder: Path) -> Path:
    """The golden collage run as if it had run on two hosts and lost the second."""
    run = copy_golden("collage", folder)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(complete=False, reason=LOST, ranks=2, missing_ranks=[1])
    summary["hosts"] = [
        {"name": "client1", "address": "10.0.0.1", "node_rank": 0, "ranks": [0],
         "samples_per_s": 35.2, "busy_pct": 99.8, "read_MBps": 0.94},
        {"name": "client2", "address": "10.0.0.2", "node_rank": 1, "ranks": [1], "lost": True},
    ]  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.mark.slow  # a whole report, PDF included (5 s)
def test_the_report_has_a_hosts_table_and_marks_a_lost_host(tmp_path: Path) -> None:
    import re

    from pypdf import PdfReader

    from harness.report import write_report
    from harness.report.runs import load_runs
    from harness.report.sections_tables import hosts_table

    one_host = copy_golden("collage", tmp_path / "one")
    assert hosts_table(load_runs([one_host])) is None  # no run across hosts: no table
    html, pdf = write_report([_lost_host_run(tmp_path / "two"), one_host], tmp_path / "out")
    table = re.search(r'<table id="table-hosts".*?</table>', html.read_text(), re.S)
    assert table is not None
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", table[0])]
    assert cells[1:9] == ["client1", "10.0.0.1", "0", "0", "35.20", "99.8", "0.940", "no"]
    assert cells[10:13] == ["client2", "10.0.0.2", "1"] and cells[-1] == "lost"
    assert len(cells) == 18  # the one-host run has no rows
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(pdf).pages).split())
    assert "Hosts of each run across several" in text and "client2 10.0.0.2" in text


def test_compare_counts_a_run_that_lost_a_host_as_incomplete(tmp_path: Path, cli) -> None:
    baseline = copy_golden("collage", tmp_path / "baseline")
    current = _lost_host_run(tmp_path / "current")
    done = cli("compare", baseline, current)
    assert "[INCOMPLETE]" in done.stdout
    assert "is incomplete: compared, and marked" in done.stderr and LOST in done.stderr


def test_a_launch_across_hosts_names_the_node_rank_that_never_joined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check before each probe's static rendezvous: node rank 1 never comes, node rank 0
    says so once the join timeout is over, instead of the launcher's nameless failure."""
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=5))
    started = time.monotonic()
    assert missing_at_join(store, "10.0.0.1:29501", 0, 2, timeout_s=0.5) == [1]
    assert 0.5 <= time.monotonic() - started < 3
    assert missing_at_join(store, "10.0.0.1:29501", 1, 2, timeout_s=0.5) == []
    assert missing_at_join(store, "10.0.0.1:29502", 0, 2, timeout_s=0) == [1]  # a fresh launch
    # the emulated launcher's one line, in the run's reason
    from harness.run import Nodes, accelerators

    monkeypatch.setattr(accelerators, "job_store", lambda: store)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    labels = ("client1 (10.0.0.1, node rank 0)", "client2 (10.0.0.2, node rank 1)")
    nodes = Nodes(2, 0, "10.0.0.1:29503", labels)
    assert accelerators._unjoined(nodes, 0.2) == (
        "host client2 (10.0.0.2, node rank 1) did not join the launch at 10.0.0.1:29503 "
        "within 0.2 s"
    )
