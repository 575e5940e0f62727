"""Capacity results as the report sees them: ``capacity.json`` (written by ``harness capacity``)
read once, checked, and turned into plain records.

``harness report`` takes run folders, folders of runs, and capacity results: a ``capacity.json``
file, or a folder that holds one. A file of another kind or of another format version, or one
whose fields have the wrong shape, is refused with a one-line ``HarnessError`` naming the file and
the field; fields this reader does not know (a later harness of the same version) are ignored.
The probes' run folders are not read from here: the ones given alongside are reported as runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.capacity import FORMAT, FORMAT_VERSION, PROBE_METRICS
from harness.errors import HarnessError
from harness.files import check_format, read_json

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
    device: str
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

    def counts(self) -> list[int]:
        """The accelerator counts probed, ascending."""
        return sorted({p.accelerators for p in self.probes})

    def median(self, count: int, get: Any) -> float | None:
        """The median of ``get(probe)`` over the probes of ``count`` (the search judges counts
        on medians); None when none of them measured it."""
        values = [get(p) for p in self.probes if p.accelerators == count]
        values = [v for v in values if v is not None]
        return float(statistics.median(values)) if values else None


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


class _Reader:
    """Typed look-ups in a capacity document, refusing a wrong shape in one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, expected: str, value: Any) -> HarnessError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return HarnessError(f"{self.path}: {where}: expected {expected}, found {shown}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "an object", value)
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, "a list", value)
        return value

    def number(self, value: Any, where: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, "a number", value)
        return float(value)

    def whole(self, value: Any, where: str, required: bool = False) -> int | None:
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, "a whole number", value)
        return value

    def text(self, value: Any, where: str, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(where, "a string", value)
        return str(value)

    def flag(self, value: Any, where: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(where, "true or false", value)
        return value


def read_capacity(path: Path) -> CapacityResults:
    """A capacity.json; HarnessError (one line) when it is not one, is of another format
    version, or has a field of the wrong shape."""
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{path}: no such file")
    check_format(path, document, FORMAT, FORMAT_VERSION)
    r = _Reader(path)
    thresholds = r.mapping(document.get("thresholds"), "thresholds")
    clients = r.whole(document.get("hosts"), "hosts") or 1
    scenarios = [
        _scenario(r, entry, f"scenarios[{i}]", clients)
        for i, entry in enumerate(r.items(document.get("scenarios"), "scenarios"))
    ]
    return CapacityResults(
        path=path,
        started=r.text(document.get("started"), "started"),
        min_busy=r.number(thresholds.get("min_busy_pct"), "thresholds.min_busy_pct"),
        min_busy_each=r.number(thresholds.get("min_busy_pct_each"), "thresholds.min_busy_pct_each"),
        max_accelerators=r.whole(thresholds.get("max_accelerators"), "thresholds.max_accelerators"),
        probe_s=r.number(thresholds.get("probe_s"), "thresholds.probe_s"),
        repeat=r.whole(thresholds.get("repeat"), "thresholds.repeat"),
        complete=r.flag(document.get("complete"), "complete"),
        stopped=r.text(document.get("stopped"), "stopped") or None,
        scenarios=scenarios,
        clients=clients,
    )


def _scenario(r: _Reader, entry: Any, where: str, clients: int) -> CapacityScenario:
    entry = r.mapping(entry, where)
    profile = r.mapping(entry.get("profile"), f"{where}.profile")
    probes = [
        _probe(r, item, f"{where}.probes[{i}]")
        for i, item in enumerate(r.items(entry.get("probes"), f"{where}.probes"))
    ]
    limiter = r.text(entry.get("limiter"), f"{where}.limiter") or None
    evidence = r.text(entry.get("limiter_evidence"), f"{where}.limiter_evidence")
    final = limiter is not None
    if limiter is None and probes:  # the search stopped before naming it: the last probe's
        limiter, evidence = probes[-1].limiter, probes[-1].evidence
    return CapacityScenario(
        scenario=r.text(entry.get("scenario"), f"{where}.scenario", "unnamed scenario"),
        scenario_file=r.text(entry.get("scenario_file"), f"{where}.scenario_file"),
        profile=r.text(profile.get("profile"), f"{where}.profile.profile", "unknown profile"),
        device=r.text(profile.get("profile_device"), f"{where}.profile.profile_device"),
        step_s=r.number(profile.get("profile_mean_step_s"), f"{where}.profile.profile_mean_step_s"),
        scaling=r.text(profile.get("scaling"), f"{where}.profile.scaling", "none"),
        scale=r.number(profile.get("scale"), f"{where}.profile.scale"),
        ceiling_MBps=r.number(entry.get("ceiling_MBps"), f"{where}.ceiling_MBps"),
        ceiling_how=r.text(entry.get("ceiling_how"), f"{where}.ceiling_how"),
        client_cores=r.whole(entry.get("client_cores"), f"{where}.client_cores"),
        max_accelerators=r.whole(entry.get("max_accelerators"), f"{where}.max_accelerators"),
        capped=r.flag(entry.get("capped"), f"{where}.capped"),
        limiter=limiter,
        evidence=evidence,
        final=final,
        seconds=r.number(entry.get("seconds"), f"{where}.seconds"),
        probes=probes,
        clients=clients,
    )


def _probe(r: _Reader, item: Any, where: str) -> CapacityProbe:
    item = r.mapping(item, where)
    metrics: dict[str, float | None] = {}
    for name, value in r.mapping(item.get("metrics"), f"{where}.metrics").items():
        if name in PROBE_METRICS:  # checked; a later harness's others are kept
            metrics[name] = r.number(value, f"{where}.metrics.{name}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            metrics[str(name)] = float(value)  # a later harness's metric: kept, not checked
    verdict = r.text(item.get("verdict"), f"{where}.verdict", "fail")
    if verdict not in ("pass", "fail"):
        raise r.fail(f"{where}.verdict", '"pass" or "fail"', verdict)
    complete = item.get("complete")
    accelerators = r.whole(item.get("accelerators"), f"{where}.accelerators", required=True)
    if accelerators is None or accelerators < 1:
        raise r.fail(f"{where}.accelerators", "1 or more", accelerators)
    return CapacityProbe(
        accelerators=accelerators,
        busy_pct=r.number(item.get("busy_pct"), f"{where}.busy_pct"),
        busy_pct_min=r.number(item.get("busy_pct_min"), f"{where}.busy_pct_min"),
        verdict=verdict,
        complete=True if complete is None else r.flag(complete, f"{where}.complete"),
        limiter=r.text(item.get("limiter"), f"{where}.limiter", "not named"),
        evidence=r.text(item.get("evidence"), f"{where}.evidence"),
        page_cache_hit_share=r.number(
            item.get("page_cache_hit_share"), f"{where}.page_cache_hit_share"
        ),
        metrics=metrics,
        run=r.text(item.get("run"), f"{where}.run") or None,
        reason=r.text(item.get("reason"), f"{where}.reason") or None,
    )
