"""The capacity search and the limiter, pure: scripted probe results, no runs; the settings
model behind the CLI, the suite key and the schema; capacity.json's model as written and read."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result

import harness.capacity.limiter as limiter_constants
from harness.capacity import Probe, Search, name_limiter
from harness.capacity.lines import answer_sentence
from harness.capacity.orchestrate import _name_limiter
from harness.capacity.probes import HostResult, combine
from harness.cli import build_parser
from harness.commands.capacity import settings_from
from harness.results.capacity_file import (
    CapacityFile,
    HostCeiling,
    ProbeRecord,
    ScenarioSearch,
    read_capacity_file,
    write_capacity_file,
)
from harness.scenario import CapacitySettings, scenario_json_schema


def drive(search: Search, busy_of, limit: int = 100) -> list[int]:
    """Run the search against ``busy_of(count, attempt) -> (mean, min)``; the probed counts."""
    probed: list[int] = []
    while (count := search.next_count()) is not None:
        assert len(probed) < limit, probed
        attempt = probed.count(count)
        mean, least = busy_of(count, attempt)
        search.record(Probe(count, mean, least))
        probed.append(count)
    return probed


def storage_for(capacity: float):
    """Busy % of N accelerators on a storage that feeds ``capacity`` of them fully."""

    def busy(count: int, _attempt: int) -> tuple[float, float]:
        value = min(99.0, 99.0 * capacity / count)
        return value, value - 1

    return busy


@pytest.mark.parametrize("capacity", [0.5, 1, 2, 3, 5, 7, 8, 13, 40])
def test_the_search_finds_the_largest_passing_count(capacity: float) -> None:
    search = Search(min_busy=90, min_busy_each=85, max_accelerators=64)
    probed = drive(search, storage_for(capacity))
    expected = max((n for n in range(1, 65) if 99.0 * capacity / n >= 90), default=0)
    assert search.answer == expected
    assert probed[: min(3, len(probed))] == [1, 2, 4][: min(3, len(probed))]  # geometric first
    assert len(probed) <= 2 * 7 + 2  # growth plus bisection, not a sweep


def test_a_count_that_passes_at_the_cap_is_a_lower_bound() -> None:
    search = Search(max_accelerators=6)
    probed = drive(search, storage_for(100))
    assert probed == [1, 2, 4, 6] and search.answer == 6 and search.capped


def test_one_failing_accelerator_answers_zero() -> None:
    search = Search(repeat=3)
    probed = drive(search, storage_for(0.3))
    assert probed == [1, 1, 1] and search.answer == 0 and not search.capped


def test_the_lowest_accelerator_must_pass_too() -> None:
    search = Search(min_busy=90, min_busy_each=85, max_accelerators=16)
    # the mean stays high but beyond 4 accelerators one of them starves
    drive(search, lambda n, _a: (95.0, 95.0 if n <= 4 else 70.0))
    assert search.answer == 4


def test_repeats_keep_one_noisy_probe_from_moving_the_answer() -> None:
    # The storage feeds 5; the first probe of 6 is a lucky outlier that passes.
    def noisy(count: int, attempt: int) -> tuple[float, float]:
        if count == 6 and attempt == 0:
            return 95.0, 93.0
        return storage_for(5)(count, attempt)

    search = Search(repeat=3, max_accelerators=64)
    probed = drive(search, noisy)
    assert search.answer == 5
    assert probed.count(5) == 3 and probed.count(6) == 3  # both sides confirmed by medians
    without = Search(repeat=1, max_accelerators=64)
    drive(without, noisy)
    assert without.answer == 6  # what a single probe would have claimed


def test_a_confirmation_that_turns_the_verdict_moves_the_bracket() -> None:
    # 4 passes once, then fails twice: the answer falls back below it.
    def flaky(count: int, attempt: int) -> tuple[float, float]:
        if count == 4:
            return (92.0, 90.0) if attempt == 0 else (80.0, 78.0)
        return storage_for(4.5)(count, attempt) if count < 4 else (60.0, 50.0)

    search = Search(repeat=3)
    drive(search, flaky)
    assert search.answer == 3 and not search.passes(4)


def test_an_incomplete_probe_fails() -> None:
    search = Search()
    search.record(Probe(1, 99.0, 99.0, complete=False))
    assert not search.passes(1) and search.answer == 0


def scripted(search: Search, *probes: tuple[int, float, str]) -> list[Probe]:
    """Record ``(count, busy %, limiter)`` probes in order (each accelerator as busy as the
    mean); the probes recorded."""
    recorded = [
        Probe(n, busy, busy, limiter=name, evidence=f"probe {i}")
        for i, (n, busy, name) in enumerate(probes)
    ]
    for probe in recorded:
        search.record(probe)
    return recorded


def test_the_limiter_is_the_median_repeats_not_the_first_probes() -> None:
    # As seen at the H200 profile: the first probe of the failing count said "harness", both
    # repeats "client CPU"; the verdict's median busy % is the second repeat's.
    search = Search(repeat=3, max_accelerators=8)
    probes = scripted(
        search,
        (1, 99.0, "none"), (2, 98.0, "none"), (4, 60.0, "harness"), (4, 80.0, "client CPU"),
        (4, 75.0, "client CPU"), (2, 97.0, "none"), (2, 96.0, "none"), (3, 60.0, "harness"),
        (3, 85.0, "client CPU"), (3, 80.0, "client CPU"),
    )  # fmt: skip
    assert search.next_count() is None and search.answer == 2
    assert search.judged_count() == 3  # the first failing count
    assert search.judged_probe() is probes[9]  # busy 60, 85, 80: the median is 80
    assert search.judged_probe().limiter == "client CPU"
    failing_first = Search(repeat=3, max_accelerators=8)
    probes = scripted(
        failing_first, (1, 60.0, "harness"), (1, 80.0, "client CPU"), (1, 82.0, "client CPU")
    )
    assert failing_first.judged_probe() is probes[1]  # not the first probe's "harness"


def test_an_even_number_of_repeats_takes_the_lower_median_in_probe_order() -> None:
    search = Search(repeat=4, max_accelerators=1)
    probes = scripted(search, (1, 50.0, "a"), (1, 40.0, "b"), (1, 50.0, "c"), (1, 70.0, "d"))
    assert search.judged_probe() is probes[0]  # 40, 50 (a), 50 (c), 70: the lower median
    # an incomplete probe counts as 0 %, as the verdict counts it
    incomplete = Search(repeat=3, max_accelerators=1)
    incomplete.record(Probe(1, 99.0, 99.0, complete=False, limiter="harness"))
    kept = scripted(incomplete, (1, 30.0, "storage"), (1, 20.0, "client CPU"))
    assert incomplete.judged_probe() is kept[1]  # 0, 30, 20: the median is 20


def test_a_capped_search_takes_the_limiter_of_the_maximum() -> None:
    search = Search(repeat=3, max_accelerators=4)
    probes = scripted(
        search,
        (1, 99.0, "none"), (2, 99.0, "none"), (4, 97.0, "none"), (4, 93.0, "storage"),
        (4, 95.0, "storage"),
    )  # fmt: skip
    assert search.capped and search.next_count() is None
    assert search.judged_count() == 4 and search.judged_probe() is probes[4]  # 93, 95, 97
    assert Search().judged_probe() is None  # nothing probed yet


def test_the_scenario_says_which_probe_its_limiter_came_from(tmp_path: Path) -> None:
    search = Search(repeat=3, max_accelerators=2)
    probes = scripted(
        search,
        (1, 99.0, "none"), (2, 60.0, "harness"), (2, 80.0, "client CPU"), (1, 98.0, "none"),
        (2, 70.0, "client CPU"), (1, 97.0, "none"),
    )  # fmt: skip
    entry = ScenarioSearch(scenario="s", max_accelerators=search.answer)
    entry.probes = [
        ProbeRecord(
            accelerators=p.accelerators, busy_pct=p.busy_pct, limiter=p.limiter, evidence=p.evidence
        )
        for p in probes
    ]
    _name_limiter(entry, search)
    assert (entry.limiter, entry.limiter_evidence, entry.limiter_probe) == (
        "client CPU",
        "probe 4",  # busy 60, 80, 70 at 2: the median is 70, the scenario's probe 4
        4,
    )
    assert "limited by client CPU (at 2 accelerator(s), the median of 3 probes): probe 4" in (
        answer_sentence(entry)
    )
    path = tmp_path / "capacity.json"
    write_capacity_file(CapacityFile(scenarios=[entry]), path)
    assert read_capacity_file(path).scenarios[0].limiter_probe == 4


# The README's limiter table: the threshold of each limiter, and the constant that is it (in %).
README = Path(__file__).resolve().parents[1] / "README.md"
THRESHOLDS = {
    "storage": ("STORAGE_SHARE", 100 * limiter_constants.STORAGE_SHARE),
    "client CPU": ("CPU_SHARE", 100 * limiter_constants.CPU_SHARE),
    "synchronisation": ("BARRIER_PCT", limiter_constants.BARRIER_PCT),
    "page cache": ("PAGE_CACHE_SHARE", 100 * limiter_constants.PAGE_CACHE_SHARE),
    "network link": ("SERVER_DISK_SHARE", 100 * limiter_constants.SERVER_DISK_SHARE),
    "storage or link": ("STORAGE_SHARE", 100 * limiter_constants.STORAGE_SHARE),
}


def readme_thresholds() -> dict[str, str]:
    """The rows of the README's limiter table (``| limiter | threshold | when |``), as
    limiter -> threshold."""
    text = README.read_text(encoding="utf-8")
    table = text.split("\n| limiter | threshold | when |\n|---|---|---|\n", 1)[1].split("\n\n")[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| .+ \|$", table, flags=re.MULTILINE)
    assert len(rows) == len(table.splitlines()), table
    return dict(rows)


def test_the_readme_limiter_table_states_the_constants() -> None:
    rows = readme_thresholds()
    assert set(rows) == {*THRESHOLDS, "harness", "none"}
    for name, (constant, percent) in THRESHOLDS.items():
        number = re.match(r"(\d+(?:\.\d+)?) % ", rows[name])
        assert number, f"README: the {name} threshold is not a percentage: {rows[name]!r}"
        assert float(number[1]) == pytest.approx(percent), f"README {name} vs {constant}"
    assert rows["harness"] == rows["none"] == "none"
    # every threshold constant of the limiter is in the table
    constants = {
        name for name in vars(limiter_constants) if re.fullmatch(r"[A-Z_]+_(SHARE|PCT)", name)
    }
    assert constants == {constant for constant, _ in THRESHOLDS.values()}


def metrics(**values: float) -> dict:
    return {name: {"value": value} for name, value in values.items()}


def test_the_limiter_names_the_storage_at_its_ceiling() -> None:
    limiter = name_limiter(
        metrics(read_MBps=95.0, requested_MBps=95.0, cpu_pct=40.0, data_wait_pct=30.0),
        passed=False,
        ceiling_MBps=100.0,
        ceiling_how="fio psync",
        cores=2,
        dataset_bytes=10**12,
        page_cache_bytes=10**10,
    )
    assert limiter.name == "storage" and "95% of the 100.0 MB/s ceiling (fio psync)" in (
        limiter.evidence
    )


def test_the_limiter_names_the_client_cpu_and_synchronisation() -> None:
    common = {
        "passed": False,
        "ceiling_MBps": 1000.0,
        "ceiling_how": "fio",
        "cores": 2,
        "dataset_bytes": 10**12,
        "page_cache_bytes": 10**10,
    }
    cpu = name_limiter(
        metrics(read_MBps=50.0, requested_MBps=50.0, cpu_pct=190.0), accelerators=2, **common
    )
    assert cpu.name == "client CPU" and "95% of the 2 core(s)" in cpu.evidence
    # one accelerator with one worker can use one core: saturating it is the limit
    one = name_limiter(metrics(read_MBps=1.0, requested_MBps=1.0, cpu_pct=98.0), **common)
    assert one.name == "client CPU" and "the other 1 core(s)" in one.evidence
    sync = name_limiter(
        metrics(read_MBps=50.0, requested_MBps=50.0, cpu_pct=50.0, barrier_pct=25.0),
        accelerators=4,
        **common,
    )
    assert sync.name == "synchronisation"
    idle = name_limiter(
        metrics(read_MBps=50.0, requested_MBps=50.0, cpu_pct=50.0, data_wait_pct=40.0),
        accelerators=4,
        **common,
    )
    assert idle.name == "harness" and "40.0 %" in idle.evidence


def test_the_limiter_says_when_the_page_cache_served_the_reads() -> None:
    limiter = name_limiter(
        metrics(read_MBps=10.0, requested_MBps=100.0, cpu_pct=50.0),
        passed=True,
        ceiling_MBps=50.0,
        ceiling_how="fio",
        cores=2,
        dataset_bytes=10**9,
        page_cache_bytes=10**10,
    )
    assert limiter.name == "page cache" and "5x" in limiter.evidence
    assert "90% of the bytes asked for came from memory" in limiter.evidence


def test_a_saturated_cpu_is_the_limiter_even_when_memory_served_the_reads() -> None:
    limiter = name_limiter(
        metrics(read_MBps=10.0, requested_MBps=100.0, cpu_pct=195.0),
        passed=False,
        ceiling_MBps=50.0,
        ceiling_how="fio",
        cores=2,
        dataset_bytes=10**9,
        page_cache_bytes=10**10,
        accelerators=2,
    )
    assert limiter.name == "client CPU"
    assert "90% of the bytes asked for came from memory" in limiter.evidence


def test_the_cli_takes_defaults_and_bounds_from_the_settings_model(
    cli: Callable[..., Result],
) -> None:
    args = build_parser().parse_args(["capacity", "scenario.yaml"])
    assert settings_from(args) == CapacitySettings()
    given = build_parser().parse_args(["capacity", "s.yaml", "--min-busy", "80", "--repeat", "1"])
    assert settings_from(given) == CapacitySettings(min_busy=80.0, repeat=1)
    done = cli("capacity", "scenario.yaml", "--min-busy", "120")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: --min-busy: input should be less than or equal to 100 (got 120.0)"
    ]
    assert "default 90; above 0, at most 100" in " ".join(cli("capacity", "--help").stdout.split())
    schema = scenario_json_schema()["$defs"]["CapacitySettings"]["properties"]
    assert (schema["min_busy"]["default"], schema["min_busy"]["maximum"]) == (90.0, 100)
    assert scenario_json_schema()["$defs"]["Suite"]["properties"]["capacity"]


def host(name: str, busy: float, least: float, read: float, node_rank: int = 0) -> HostResult:
    measured = {"busy_pct": busy, "busy_pct_min": least, "read_MBps": read}
    return HostResult(
        host=name,
        address=f"10.0.0.{node_rank + 1}",
        node_rank=node_rank,
        exit_code=0,
        complete=True,
        reason=None,
        run=f"results/{name}",
        metrics=measured,
    )


def test_capacity_json_is_written_as_read(tmp_path: Path) -> None:
    """Two hosts' probe combined, written after the probe, read back by the same model; the
    scenario's limiter stays out of the file until the search names it."""
    entry = ScenarioSearch(
        scenario="s",
        workers=1,
        hosts=[HostCeiling(host=h, ceiling_MBps=100.0, client_cores=2) for h in "ab"],
    )
    # namespaces or containers share a host name: address and node rank tell them apart
    parts = [host("vm", 95, 91, 50.0), host("vm", 89, 86, 60.0, node_rank=1)]
    record = combine(2, parts, entry, CapacitySettings())
    assert (record.busy_pct, record.busy_pct_min, record.verdict) == (92.0, 86.0, "pass")
    assert record.evidence.endswith("(host vm, 10.0.0.2, node rank 1)")
    assert record.hosts and [(h.address, h.node_rank) for h in record.hosts] == [
        ("10.0.0.1", 0),
        ("10.0.0.2", 1),
    ]
    assert record.metrics["read_MBps"] == 110.0 and record.accelerators_total == 4
    entry.probes.append(record)
    document = CapacityFile(command=["harness", "capacity"], hosts=2, scenarios=[entry])
    path = tmp_path / "capacity.json"
    write_capacity_file(document, path)
    written = json.loads(path.read_text())
    assert list(written) == [
        "format", "format_version", "started", "command", "hosts", "thresholds", "complete",
        "stopped", "scenarios",
    ]  # fmt: skip
    assert not {"limiter", "limiter_evidence", "limiter_probe"} & set(written["scenarios"][0])
    assert list(written["scenarios"][0]["probes"][0]) == [
        "accelerators", "accelerators_total", "busy_pct", "busy_pct_min", "complete", "verdict",
        "limiter", "evidence", "page_cache_hit_share", "metrics", "run", "reason", "hosts",
    ]  # fmt: skip
    assert read_capacity_file(path) == document
    entry.limiter, entry.limiter_evidence = record.limiter, record.evidence
    write_capacity_file(document, path)
    assert json.loads(path.read_text())["scenarios"][0]["limiter"] == record.limiter


SSHFS_MOUNT = {
    "fs_type": "fuse.sshfs",
    "server": "10.201.1.1",
    "interface": "hlc1",
    "counted_by": "pipeline",
}


def limiter_on_a_network_mount(**values: float) -> str:
    return name_limiter(
        metrics(read_MBps=1.15, requested_MBps=1.2, **values),
        passed=False,
        ceiling_MBps=1.2,
        ceiling_how="harness whole-file reads",
        cores=2,
        dataset_bytes=10**8,
        page_cache_bytes=2 * 10**10,
        mount=SSHFS_MOUNT,
    ).name


def test_a_network_mount_at_its_ceiling_names_the_link_or_the_storage_by_the_server_view() -> None:
    assert limiter_on_a_network_mount(server_disk_util_pct=12.0) == "network link"
    assert limiter_on_a_network_mount(server_disk_util_pct=97.0) == "storage"
    assert limiter_on_a_network_mount() == "storage or link"
    # a local disk at its ceiling stays "storage", server view or not
    local = name_limiter(
        metrics(read_MBps=29.0, requested_MBps=29.5, server_disk_util_pct=10.0),
        passed=False,
        ceiling_MBps=30.0,
        ceiling_how="O_DIRECT",
        cores=2,
        dataset_bytes=10**8,
        page_cache_bytes=2 * 10**10,
        mount={"fs_type": "ext4", "server": None, "counted_by": "block"},
    )
    assert local.name == "storage"


def test_bytes_that_crossed_a_link_are_never_called_memory() -> None:
    """On sshfs the pipeline's misses are the read figure: a cold probe reading what it asked
    for names the link or storage, never the page cache."""
    name = limiter_on_a_network_mount(server_disk_util_pct=5.0)
    assert name not in ("page cache", "synchronisation")


def test_the_answer_names_the_profiles_accelerator_class_not_the_calibrating_host() -> None:
    entry = ScenarioSearch(scenario="s", max_accelerators=3, hosts=[HostCeiling(host="intel")])
    entry.profile.profile, entry.profile.profile_device = "cpu2", "cpu: AMD EPYC (1 threads)"
    sentence = answer_sentence(entry)
    assert "feed 3 emulated CPU accelerator(s) (profile cpu2)" in sentence
    assert "AMD" not in sentence
    for device, named in [
        ("NVIDIA H200", "NVIDIA H200"),
        ("H100 (MLPerf Storage's computation_time, not measured here)", "H100"),
    ]:
        entry.profile.profile_device = device
        assert f"feed 3 emulated {named} accelerator(s)" in answer_sentence(entry)
