"""The lines a capacity search prints as it goes: the read ceiling of each scenario, one line per
probe, and the sentence that answers for a scenario."""

from __future__ import annotations

from harness.capacity.ceiling import Ceiling
from harness.results.capacity_file import ProbeRecord, ScenarioSearch


def ceiling_line(entry: ScenarioSearch, ceiling: Ceiling, scale: float, hosts: int) -> str:
    return (
        f"{entry.scenario}: read ceiling {ceiling.MBps:.1f} MB/s ({ceiling.how}); profile "
        f"{entry.profile.profile} x{scale:.4g}" + (f"; {hosts} hosts" if hosts > 1 else "")
    )


def probe_line(probe: ProbeRecord) -> str:
    metrics = probe.metrics

    def show(name: str, unit: str, digits: int = 1) -> str:
        value = metrics.get(name)
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    servers = "" if probe.servers is None else f" ({probe.servers} server(s))"
    return (
        f"  {probe.accelerators:3d} accelerators{servers}: busy {show('busy_pct', ' %')} "
        f"(min {show('busy_pct_min', ' %')}), {show('samples_per_s', ' samples/s')}, "
        f"read {show('read_MBps', ' MB/s')}, CPU {show('cpu_pct', ' %', 0)} -> "
        f"{probe.verdict}; limiter: {probe.limiter} ({probe.evidence})"
    )


def answer_sentence(entry: ScenarioSearch) -> str:
    count = entry.max_accelerators
    bound = "at least " if entry.capped else ""
    hosts = len(entry.hosts)
    who = "this client feed" if hosts == 1 else f"these {hosts} clients feed"
    each = "" if hosts == 1 else f" each ({(count or 0) * hosts} in all)"
    limiter = "n/a" if entry.limiter is None else entry.limiter
    fed = f"{count} emulated {entry.profile.accelerator_class} accelerator(s)"
    server = entry.server
    if server is not None and entry.max_servers is not None:
        fed = (
            f"{entry.max_servers} server(s) ({count} emulated {entry.profile.accelerator_class} "
            f"accelerators; {server.accelerators} accelerators and {server.cores} cores each)"
        )
        each = "" if hosts == 1 else f" each ({entry.max_servers * hosts} servers in all)"
    return (
        f"{entry.scenario}: this storage and {who} {bound}{fed}{each} "
        f"(profile {entry.profile.profile}); "
        f"limited by {limiter}{_judged(entry)}: {entry.limiter_evidence or ''} "
        f"[search took {entry.seconds} s]"
    )


def _judged(entry: ScenarioSearch) -> str:
    """Which probe the limiter is that of, e.g. " (at 4 accelerator(s), the median of 3
    probes)"; "" when the file does not say."""
    if entry.limiter_probe is None or entry.limiter_probe >= len(entry.probes):
        return ""
    count = entry.probes[entry.limiter_probe].accelerators
    repeats = sum(1 for p in entry.probes if p.accelerators == count)
    median = "" if repeats == 1 else f", the median of {repeats} probes"
    return f" (at {count} accelerator(s){median})"
