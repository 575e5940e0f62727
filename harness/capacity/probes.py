"""Running one capacity probe: ``count`` emulated accelerators on each host, a real run folder
(emulated compute, cold page cache, ``probe_s`` measured seconds after the warm-up steps), and
the hosts' results combined into one record of ``capacity.json`` with its verdict and limiter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.capacity.hosts import Hosts
from harness.capacity.limiter import name_limiter
from harness.pipeline.window import fill_batches
from harness.results.capacity_file import (
    PROBE_METRICS,
    HostCeiling,
    HostProbe,
    ProbeRecord,
    ScenarioSearch,
)
from harness.run import RunOutcome, prepare_run, run_accelerators
from harness.scenario import CapacitySettings, load_scenario
from harness.scenario.capacity_settings import server_shape
from harness.train.distributed import HostIdentity

# Rates that add up across hosts; the other metrics of a probe are the first host's.
SUMMED_METRICS = ("samples_per_s", "read_MBps", "requested_MBps", "consumed_MBps")


def probe_overrides(settings: CapacitySettings, overrides: Sequence[str]) -> list[str]:
    """The settings' profile, the user's overrides, then what every probe is: emulated, timed,
    cold."""
    profile = [f"training.profile={settings.profile}"] if settings.profile else []
    server = []
    if settings.server is not None:
        accelerators, cores = server_shape(settings.server)
        server = [f"training.server.accelerators={accelerators}", f"training.server.cores={cores}"]
    return [
        *profile,
        *server,
        *overrides,
        "training.compute=emulated",
        "training.steps=null",
        f"training.duration_s={settings.probe_s}",
        "pipeline.page_cache=cold",
    ]


@dataclass(frozen=True)
class ProbeRequest:
    """What every probe of a search shares: where the scenario comes from and where runs go."""

    file: Path
    overrides: list[str]  # ``probe_overrides``
    results_dir: Path
    command: list[str]
    quiet: bool


def probe_here(request: ProbeRequest, count: int, hosts: Hosts) -> RunOutcome:
    """This host's share of one probe: ``count`` emulated accelerators, a real run folder.

    Its rates come from the steady window: the warm-up lasts until the pipeline's prefetched
    batches (``fill_batches``) have been consumed, if that is later than the scenario's warm-up;
    before, the steps take what was fetched while the pipeline filled (the summary's ``window``
    shows that time apart: ``fill``)."""
    overrides = [*request.overrides, f"training.accelerators={count}"]
    probe_item = load_scenario(request.file, overrides)
    pipeline, training = probe_item.scenario.pipeline, probe_item.scenario.training
    fill = fill_batches(pipeline.workers, pipeline.prefetch_factor)
    if training.warmup_steps < fill:
        probe_item = load_scenario(request.file, [*overrides, f"training.warmup_steps={fill}"])
    return run_accelerators(
        prepare_run(probe_item),
        count,
        results_root=request.results_dir,
        command=request.command,
        repeat=None,
        quiet=request.quiet,
        nodes=hosts.nodes(),
    )


@dataclass(frozen=True)
class HostResult:
    """One host's share of a probe, as the hosts send it to the first."""

    host: str  # its name; hosts that share one are told apart by address and node rank
    address: str
    node_rank: int
    exit_code: int
    complete: bool
    reason: str | None
    run: str | None
    metrics: dict[str, float | None]
    page_cache: dict[str, Any] = field(default_factory=dict)
    # the mount the probe read and who counted its bytes (``summary.json`` ``storage``'s last)
    mount: dict[str, Any] = field(default_factory=dict)


def host_result(outcome: RunOutcome, identity: HostIdentity) -> HostResult:
    summary = outcome.summary
    return HostResult(
        host=identity.name,
        address=identity.address,
        node_rank=identity.node_rank,
        exit_code=outcome.exit_code,
        complete=outcome.complete,
        reason=outcome.reason,
        run=str(outcome.folder) if outcome.folder else None,
        metrics={name: summary.value(name) if summary else None for name in PROBE_METRICS},
        page_cache=dict(summary.page_cache) if summary else {},
        mount=dict(summary.storage[-1]) if summary and summary.storage else {},
    )


def combine(
    count: int, parts: list[HostResult], entry: ScenarioSearch, settings: CapacitySettings
) -> ProbeRecord:
    """One probe of every host: busy % over all accelerators (each host runs ``count``), the
    lowest accelerator anywhere, rates summed; the limiter named per host, and overall that of
    the host whose slowest accelerator was slowest."""

    def each(name: str) -> list[float]:
        return [value for p in parts if (value := p.metrics.get(name)) is not None]

    busy, least = each("busy_pct"), each("busy_pct_min")
    complete = all(p.complete for p in parts)
    mean_busy = sum(busy) / len(busy) if busy and len(busy) == len(parts) else None
    lowest = min(least) if least and len(least) == len(parts) else None
    passed = (
        complete
        and mean_busy is not None
        and mean_busy >= settings.min_busy
        and (lowest or 0) >= settings.min_busy_each
    )
    hosts = [
        _host_probe(part, machine, count, entry.workers or 0, passed)
        for part, machine in zip(parts, entry.hosts, strict=True)
    ]
    worst = min(hosts, key=lambda h: h.metrics.get("busy_pct_min") or 0.0)
    totals = dict(parts[0].metrics)
    for name in SUMMED_METRICS:
        values = each(name)
        totals[name] = sum(values) if len(values) == len(parts) else None
    totals["busy_pct"], totals["busy_pct_min"] = mean_busy, lowest
    return ProbeRecord(
        accelerators=count,
        accelerators_total=count * len(parts),
        busy_pct=mean_busy,
        busy_pct_min=lowest,
        complete=complete,
        verdict="pass" if passed else "fail",
        limiter=worst.limiter,
        evidence=worst.evidence
        + (
            f" (host {worst.host}, {worst.address}, node rank {worst.node_rank})"
            if len(hosts) > 1
            else ""
        ),
        page_cache_hit_share=hit_share(totals),
        metrics=totals,
        run=parts[0].run,
        reason=next((p.reason for p in parts if p.reason), None),
        hosts=hosts if len(hosts) > 1 else None,
    )


def _host_probe(
    part: HostResult, machine: HostCeiling, count: int, workers: int, passed: bool
) -> HostProbe:
    """One host's share of a probe, with the limiter named from its own numbers."""
    limiter = name_limiter(
        {name: {"value": value} for name, value in part.metrics.items()},
        passed=passed,
        ceiling_MBps=machine.ceiling_MBps,
        ceiling_how=machine.ceiling_how,
        cores=machine.client_cores or 0,
        dataset_bytes=part.page_cache.get("dataset_bytes"),
        page_cache_bytes=part.page_cache.get("ram_bytes"),
        accelerators=count,
        workers=workers,
        mount=part.mount,
    )
    return HostProbe(
        host=part.host,
        address=part.address,
        node_rank=part.node_rank,
        run=part.run,
        complete=part.complete,
        reason=part.reason,
        metrics=part.metrics,
        limiter=limiter.name,
        evidence=limiter.evidence,
        page_cache_hit_share=hit_share(part.metrics),
    )


def hit_share(metrics: dict[str, float | None]) -> float | None:
    """The share of the bytes asked for that did not come from the device (the page cache)."""
    read, requested = metrics.get("read_MBps"), metrics.get("requested_MBps")
    if read is None or not requested:
        return None
    return round(max(0.0, 1 - read / requested), 4)
