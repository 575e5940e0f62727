"""Capacity results as the report sees them: ``capacity.json`` (written by ``harness capacity``)
read once, checked by its model (``harness.results.capacity_file``), and turned into plain
records with the report's defaults.

``harness report`` takes run folders, folders of runs, and capacity results: a ``capacity.json``
file, or a folder that holds one. A file of another kind or of another format version, or one
whose fields have the wrong shape, is refused with a one-line ``HarnessError`` naming the file and
the field; fields this reader does not know (a later harness of the same version) are ignored.
The probes' run folders are not read from here: the ones given alongside are reported as runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.results.capacity_file import (
    ProbeRecord,
    ScenarioSearch,
    read_capacity_file,
)

CAPACITY_FILE = "capacity.json"
RUN_FILES = ("manifest.json", "summary.json")


@dataclass(frozen=True)
class CapacityProbe:
    """One probe: a run at ``accelerators`` emulated accelerators, and what the search made of
    it."""

    accelerators: int
    busy_pct: float | None
    busy_pct_min: float | None
    verdict: str  # "pass" | "fail"
    complete: bool
    limiter: str
    evidence: str
    page_cache_hit_share: float | None
    metrics: dict[str, float | None]
    run: str | None  # the run folder, as the capacity command wrote it
    reason: str | None  # why the run stopped early, when it did

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    @property
    def run_id(self) -> str | None:
        return Path(self.run).name if self.run else None


@dataclass(frozen=True)
class CapacityScenario:
    """One scenario's search: the profile, the read ceiling, the answer and its limiter."""

    scenario: str
    scenario_file: str
    profile: str
    device: str  # the accelerator class (CapacityProfile.accelerator_class)
    step_s: float | None
    scaling: str
    scale: float | None
    ceiling_MBps: float | None
    ceiling_how: str
    client_cores: int | None
    max_accelerators: int | None  # None: no probe finished
    capped: bool  # even the maximum passed: the answer is a lower bound
    limiter: str | None
    evidence: str
    final: bool  # the search named its limiter (False: taken from the last probe so far)
    seconds: float | None
    probes: list[CapacityProbe]
    clients: int = 1  # hosts probing together (each runs the probe's count of accelerators)
    # the server shape the search grew in (accelerators, cores) and its answer in servers
    server: tuple[int, int] | None = None
    max_servers: int | None = None

    def counts(self) -> list[int]:
        """The accelerator counts probed, ascending."""
        return sorted({p.accelerators for p in self.probes})

    def median(self, count: int, get: Callable[[CapacityProbe], float | None]) -> float | None:
        """The median of ``get(probe)`` over the probes of ``count`` (the search judges counts
        on medians); None when none of them measured it."""
        values = [get(p) for p in self.probes if p.accelerators == count]
        measured = [v for v in values if v is not None]
        return float(statistics.median(measured)) if measured else None


@dataclass(frozen=True)
class CapacityResults:
    """One ``capacity.json``: the thresholds of the search and each scenario's result."""

    path: Path
    started: str
    min_busy: float | None
    min_busy_each: float | None
    max_accelerators: int | None
    probe_s: float | None
    repeat: int | None
    complete: bool
    stopped: str | None
    scenarios: list[CapacityScenario] = field(default_factory=list)
    clients: int = 1  # hosts that probed together ("hosts")


# --- which inputs are capacity results ----------------------------------------------------------


def _holds_runs(folder: Path) -> bool:
    if any((folder / name).exists() for name in RUN_FILES):
        return True
    return any(folder.glob("*/manifest.json"))


def split_inputs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(run folders or folders of runs, capacity.json files) among a report's ``paths``: a file
    is read as capacity results (and refused in one line if it is not), a folder that holds a
    ``capacity.json`` gives it, and its runs too when it also holds some."""
    runs: list[Path] = []
    capacity: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            capacity.append(path)
        elif path.is_dir() and (path / CAPACITY_FILE).is_file():
            capacity.append(path / CAPACITY_FILE)
            if _holds_runs(path):
                runs.append(path)
        else:
            runs.append(path)  # a run folder, a folder of runs, or what find_runs refuses
    return runs, capacity


def load_capacity(paths: list[Path]) -> list[CapacityResults]:
    """Each capacity.json once (by its resolved path), read and checked."""
    seen: set[Path] = set()
    out = []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved not in seen:
            seen.add(resolved)
            out.append(read_capacity(Path(path)))
    return out


# --- reading ------------------------------------------------------------------------------------


def read_capacity(path: Path) -> CapacityResults:
    """A capacity.json; HarnessError (one line) when it is not one, is of another format
    version, or has a field of the wrong shape."""
    document = read_capacity_file(path)
    thresholds = document.thresholds
    clients = document.hosts or 1
    return CapacityResults(
        path=path,
        started=document.started,
        min_busy=thresholds.min_busy_pct,
        min_busy_each=thresholds.min_busy_pct_each,
        max_accelerators=thresholds.max_accelerators,
        probe_s=thresholds.probe_s,
        repeat=thresholds.repeat,
        complete=document.complete,
        stopped=document.stopped or None,
        scenarios=[_scenario(entry, clients) for entry in document.scenarios],
        clients=clients,
    )


def _scenario(entry: ScenarioSearch, clients: int) -> CapacityScenario:
    probes = [_probe(record) for record in entry.probes]
    limiter = entry.limiter or None
    evidence = entry.limiter_evidence or ""
    final = limiter is not None
    if limiter is None and probes:  # the search stopped before naming it: the last probe's
        limiter, evidence = probes[-1].limiter, probes[-1].evidence
    profile = entry.profile
    return CapacityScenario(
        scenario=entry.scenario,
        scenario_file=entry.scenario_file,
        profile=profile.profile or "unknown profile",
        device=profile.accelerator_class,
        step_s=_float(profile.profile_mean_step_s),
        scaling=profile.scaling or "none",
        scale=_float(profile.scale),
        ceiling_MBps=_float(entry.ceiling_MBps),
        ceiling_how=entry.ceiling_how,
        client_cores=entry.client_cores,
        max_accelerators=entry.max_accelerators,
        capped=entry.capped,
        limiter=limiter,
        evidence=evidence,
        final=final,
        seconds=_float(entry.seconds),
        probes=probes,
        clients=clients,
        server=None
        if entry.server is None
        else (entry.server.accelerators or 0, entry.server.cores or 0),
        max_servers=entry.max_servers,
    )


def _probe(record: ProbeRecord) -> CapacityProbe:
    return CapacityProbe(
        accelerators=record.accelerators,
        busy_pct=_float(record.busy_pct),
        busy_pct_min=_float(record.busy_pct_min),
        verdict=record.verdict,
        complete=record.complete,
        limiter=record.limiter,
        evidence=record.evidence,
        page_cache_hit_share=_float(record.page_cache_hit_share),
        metrics={name: _float(value) for name, value in record.metrics.items()},
        run=record.run or None,
        reason=record.reason or None,
    )


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
