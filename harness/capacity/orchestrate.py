"""A whole capacity search: for each scenario, its read ceiling, then probes chosen by
``Search`` until the answer stands, ``capacity.json`` rewritten after every probe (so an
interrupted search keeps what it found and says where it stopped).

Under an outer torchrun, one controller per host runs this together: the first host decides and
writes; every host runs its share of each probe.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.capacity.ceiling import search_ceiling
from harness.capacity.hosts import HostLost, Hosts
from harness.capacity.lines import answer_sentence, ceiling_line, probe_line
from harness.capacity.probes import ProbeRequest, combine, host_result, probe_here, probe_overrides
from harness.capacity.search import Probe, Search
from harness.data.parallel import available_cpus
from harness.errors import ExitCode, HarnessError
from harness.results.capacity_file import (
    CapacityFile,
    CapacityProfile,
    CapacityThresholds,
    HostCeiling,
    ScenarioSearch,
    ServerRecord,
    write_capacity_file,
)
from harness.run import PreparedRun, prepare_run
from harness.scenario import CapacitySettings, LoadedScenario, load_scenarios

INTERRUPTED = (ExitCode.INTERRUPTED, ExitCode.TERMINATED)  # a probe stopped by SIGINT or SIGTERM


@dataclass
class CapacityResult:
    """What a search found, and how it ended."""

    document: CapacityFile
    path: Path  # capacity.json (written by the first host only)
    # OK, BAD_INPUT when a probe was refused, FAILED when a host was lost, INTERRUPTED or
    # TERMINATED
    exit_code: int
    run_folders: list[Path]  # the probes' run folders on this host
    is_first_host: bool  # the host that decided, wrote capacity.json and printed


class _Stopped(Exception):
    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


@dataclass
class _Run:
    """What every scenario's search in one ``search_capacity`` shares."""

    settings: CapacitySettings
    overrides: list[str]  # ``probe_overrides``
    document: CapacityFile
    out: Path
    hosts: Hosts
    results_dir: Path
    quiet: bool
    say: Callable[[str], None]
    folders: list[Path] = field(default_factory=list)

    def save(self) -> None:
        write_capacity_file(self.document, self.out)


def search_capacity(
    files: Sequence[str | Path],
    settings: CapacitySettings,
    *,
    out: Path,
    results_dir: Path,
    overrides: Sequence[str] = (),
    quiet: bool = False,
    command: list[str] | None = None,
    say: Callable[[str], None] = print,
) -> CapacityResult:
    """Search the capacity of each scenario in ``files`` (scenarios or suites, with the user's
    ``overrides``), writing ``out``; ``say`` gets the progress lines and the answers."""
    probe_settings = probe_overrides(settings, overrides)
    loaded = load_scenarios(list(files), probe_settings)
    for item in loaded:
        if item.scenario.training.profile is None:
            raise HarnessError(
                f"{item.file}: capacity emulates accelerators: set training.profile "
                "(harness profiles lists the shipped ones), e.g. -o training.profile=NAME"
            )
    hosts = Hosts.from_environment(loaded[0].scenario.training.collective_timeout_s)
    document = CapacityFile(
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=command if command is not None else ["harness", *sys.argv[1:]],
        hosts=hosts.count,
        thresholds=CapacityThresholds(
            min_busy_pct=settings.min_busy,
            min_busy_pct_each=settings.min_busy_each,
            max_accelerators=settings.max_accelerators,
            probe_s=settings.probe_s,
            repeat=settings.repeat,
        ),
    )
    run = _Run(settings, probe_settings, document, out, hosts, results_dir, quiet, say)
    code: int = ExitCode.OK
    try:
        for item in loaded:
            entry = _search_scenario(run, item)
            if hosts.is_first:
                say(answer_sentence(entry))
    except KeyboardInterrupt:
        document.stopped = "interrupted by SIGINT"
        code = ExitCode.INTERRUPTED
    except _Stopped as stop:
        document.stopped, code = stop.reason, stop.code
    else:
        document.complete = True
    finally:
        hosts.close()
    if document.stopped is not None:
        say(f"capacity search stopped: {document.stopped}")
    if hosts.is_first:
        run.save()
    return CapacityResult(document, out, code, run.folders, hosts.is_first)


def _search_scenario(run: _Run, item: LoadedScenario) -> ScenarioSearch:
    """One scenario's search, from its read ceiling to its answer and limiter."""
    prepared = prepare_run(item)
    entry = _begin(run, item, prepared)
    server = item.scenario.training.server
    per_server = 1 if server is None else server.accelerators  # counts are servers then
    search = Search.from_settings(run.settings, per_server)
    request = ProbeRequest(
        item.file, run.overrides, run.results_dir, run.document.command, run.quiet
    )
    started = time.monotonic()
    hosts = run.hosts
    probe = 0
    while (count := _between(hosts, search, f"after probe {probe}")) is not None:
        accelerators = count * per_server
        probe += 1
        outcome = probe_here(request, accelerators, hosts)
        if outcome.folder is not None:
            run.folders.append(outcome.folder)
        try:
            parts = hosts.gather(host_result(outcome, hosts.here))
        except HostLost as lost:  # the probes before are in capacity.json already
            where = f"during probe {probe} ({accelerators} accelerator{'s' * (accelerators > 1)})"
            raise _Stopped(f"{lost.who()} lost {where}", ExitCode.FAILED) from None
        if hosts.is_first:
            record = combine(accelerators, parts, entry, run.settings)
            if server is not None:
                record.servers = count
            search.record(
                Probe(
                    count,
                    record.busy_pct,
                    record.busy_pct_min,
                    record.complete,
                    dict(record.metrics),
                    record.run,
                    record.limiter,
                    record.evidence,
                )
            )
            entry.probes.append(record)
            entry.max_accelerators, entry.capped = search.answer * per_server, search.capped
            if server is not None:
                entry.max_servers = search.answer
            entry.seconds = round(time.monotonic() - started, 1)
            run.save()
            run.say(probe_line(record))
        # Every host stops on the worst exit of any host, so that none waits for the others.
        worst = hosts.share(max(p.exit_code for p in parts) if hosts.is_first else None)
        if worst in INTERRUPTED:
            raise _Stopped(f"interrupted during the probe of {accelerators} accelerators", worst)
        if worst == ExitCode.BAD_INPUT:
            reason = outcome.reason or next((p.reason for p in parts if p.reason), "")
            raise _Stopped(
                f"probe of {accelerators} accelerators refused: {reason}", ExitCode.BAD_INPUT
            )
    if hosts.is_first:
        _name_limiter(entry, search, per_server)
    return entry


def _between(hosts: Hosts, search: Search, where: str) -> int | None:
    """The count the first host decided to probe next (None: the search is over)."""
    try:
        return hosts.share(search.next_count() if hosts.is_first else None)
    except HostLost as lost:
        raise _Stopped(f"{lost.who()} lost {where}", ExitCode.FAILED) from None


def _begin(run: _Run, item: LoadedScenario, prepared: PreparedRun) -> ScenarioSearch:
    """The scenario's entry in capacity.json, with every host's read ceiling measured."""
    scenario = item.scenario
    compute_times = prepared.compute_times
    assert compute_times is not None  # capacity scenarios are emulated
    ceiling = search_ceiling(
        scenario,
        prepared.source.data_files(),
        run.settings.max_accelerators,
        run.settings.ceiling_s,
        with_fio=run.settings.ceiling_fio,
    )
    identity = run.hosts.here
    here = HostCeiling(
        host=identity.name,
        address=identity.address,
        node_rank=identity.node_rank,
        ceiling_MBps=round(ceiling.MBps, 3),
        ceiling_how=ceiling.how,
        ceiling=ceiling.record(),
        client_cores=available_cpus(),
    )
    entry = ScenarioSearch(
        scenario=scenario.name,
        scenario_file=str(item.file),
        profile=CapacityProfile.model_validate(compute_times.document()),
        hosts=_ceilings(run.hosts, here, scenario.name),
        ceiling_MBps=round(ceiling.MBps, 3),
        ceiling_how=ceiling.how,
        ceiling=ceiling.record(),
        client_cores=available_cpus(),
        workers=scenario.pipeline.workers,
        server=None
        if scenario.training.server is None
        else ServerRecord.model_validate(scenario.training.server.model_dump()),
    )
    if run.hosts.is_first:
        run.document.scenarios.append(entry)
        run.say(ceiling_line(entry, ceiling, compute_times.scale, run.hosts.count))
    return entry


def _ceilings(hosts: Hosts, here: HostCeiling, scenario: str) -> list[HostCeiling]:
    try:
        return hosts.gather(here)
    except HostLost as lost:
        raise _Stopped(
            f"{lost.who()} lost measuring {scenario}'s read ceiling", ExitCode.FAILED
        ) from None


def _name_limiter(entry: ScenarioSearch, search: Search, per_server: int = 1) -> None:
    """The scenario's limiter: that of the judged probe (``Search.judged_probe``: the median
    repeat of the first failing count, or of the last passing one when none failed), and which
    of the scenario's probes it is."""
    judged = search.judged_probe()
    if judged is None:
        return
    repeat = next(i for i, p in enumerate(search.probes[judged.accelerators]) if p is judged)
    # The search and the entry record the same probes in the same order.
    accelerators = judged.accelerators * per_server  # the search counts servers where set
    same_count = [i for i, r in enumerate(entry.probes) if r.accelerators == accelerators]
    entry.limiter, entry.limiter_evidence = judged.limiter, judged.evidence
    entry.limiter_probe = same_count[repeat]
