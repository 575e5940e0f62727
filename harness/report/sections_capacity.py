"""The Capacity section: what ``harness capacity`` found, per scenario, in words, a table and
curves: how many emulated accelerators this storage and this client feed, and what stops the
next one.

Per scenario: one sentence with the answer and its limiter (a lower bound when even the maximum
passed; said plainly when the page cache, not the storage, served the reads), the curves of
:mod:`harness.report.charts_capacity`, and a table of every probe with the limiter at each point.
Strings are kept as they are here (scenario names and evidence come from users and the
environment): the writers escape them.
"""

from __future__ import annotations

from pathlib import Path

from harness.report.capacity_data import CapacityProbe, CapacityResults, CapacityScenario
from harness.report.charts_capacity import capacity_chart, count_passes, cpu_share
from harness.report.content import NOT_MEASURED, Block, Chart, Note, Section, Table, fmt, num_style
from harness.report.runs import Run

PAGE_CACHE = "page cache"


def _accelerators(count: int, device: str) -> str:
    return f"{count} {device}-class accelerator{'s' * (count != 1)}"


def capacity_sentence(entry: CapacityScenario) -> str:
    """The scenario's answer in one sentence: "this storage and this client feed N <device>-class
    accelerators (<profile>) reading <scenario>; limited by <limiter>: <evidence>" (with several
    clients probing together: N per client, and the total)."""
    device = entry.device or "unknown"
    n = entry.max_accelerators
    where = f"({entry.profile}) reading {entry.scenario}"
    if entry.clients > 1 and n:
        where = f"per client ({n * entry.clients} in all; {entry.profile}) reading {entry.scenario}"
    if n is None:
        return (
            f"No answer for {entry.scenario}: the search stopped before its first probe finished "
            f"(profile {entry.profile}, {device}-class accelerators)."
        )
    if n == 0:
        fed = f"no {device}-class accelerator {where}: even one stays below the busy thresholds"
    elif entry.capped:
        fed = f"at least {_accelerators(n, device)} {where} (the most the search tried)"
    else:
        fed = f"{_accelerators(n, device)} {where}"
    if entry.server is not None and entry.max_servers is not None and n:
        per, cores = entry.server
        servers = f"{entry.max_servers} server{'s' * (entry.max_servers != 1)}"
        fed = f"{servers} of {per} accelerators and {cores} cores ({fed})"
    prefix = "" if entry.final else "So far (the search did not finish), "
    opening = "this" if prefix else "This"
    client = f"these {entry.clients} clients" if entry.clients > 1 else "this client"
    text = f"{prefix}{opening} storage and {client} feed {fed}"
    if entry.limiter == "none":
        text += f"; no resource was at its limit: {entry.evidence}"
    elif entry.limiter:
        text += f"; limited by {entry.limiter}: {entry.evidence}"
    return text.rstrip(" .") + "."


def _page_cache_note(entry: CapacityScenario) -> Note | None:
    """A plain warning where the page cache, not the storage, served the reads."""
    if entry.limiter == PAGE_CACHE:
        return Note(
            "warning",
            f"{entry.scenario}: not a storage result. The page cache (the client's memory) "
            "served the reads, so this answer says how many accelerators the client's memory "
            "feeds, not the storage. Use a dataset larger than the client's memory (MLPerf "
            "Storage asks for at least 5x its RAM) to measure the storage.",
        )
    counts = sorted({p.accelerators for p in entry.probes if p.limiter == PAGE_CACHE})
    if counts:
        shown = ", ".join(map(str, counts))
        return Note(
            "warning",
            f"{entry.scenario}: the page cache served the reads of the probes at {shown} "
            "accelerators: those points are not storage results.",
        )
    return None


def _thresholds_note(result: CapacityResults) -> Note:
    def pct(value: float | None) -> str:
        return NOT_MEASURED if value is None else f"{value:g} %"

    parts = [
        f"Capacity results {result.path}"
        + (f", started {result.started}" if result.started else ""),
        f"a count passes when the mean busy % reaches {pct(result.min_busy)} "
        f"(--min-busy) and the least busy accelerator {pct(result.min_busy_each)} "
        "(--min-busy-each)",
    ]
    if result.repeat:
        parts.append(
            f"judged on the median of {result.repeat} probe{'s' * (result.repeat != 1)} at the "
            "last passing and the first failing count"
        )
    if result.probe_s is not None:
        parts.append(f"{result.probe_s:g} s measured per probe")
    if result.max_accelerators is not None:
        parts.append(f"at most {result.max_accelerators} accelerators (--max-accelerators)")
    return Note("info", "; ".join(parts) + ".")


def _summary_table(entries: list[tuple[CapacityResults, CapacityScenario]]) -> Table:
    rows, styles = [], []
    for _, entry in entries:
        n = entry.max_accelerators
        answer = NOT_MEASURED if n is None else f"at least {n}" if entry.capped else str(n)
        step = "" if entry.step_s is None else f", {entry.step_s * 1000:.1f} ms per step"
        scaling = "" if entry.scaling == "none" else f", {entry.scaling} x{entry.scale or 1:.3g}"
        rows.append(
            [
                entry.scenario,
                f"{entry.profile} ({entry.device or 'unknown'}-class{step}{scaling})",
                answer,
                entry.limiter or NOT_MEASURED,
                fmt(entry.ceiling_MBps, "MB/s"),
                entry.ceiling_how or NOT_MEASURED,
                NOT_MEASURED if entry.client_cores is None else str(entry.client_cores),
                str(len(entry.probes)),
                fmt(entry.seconds, "s"),
            ]
        )
        limiter_style = "fail" if entry.limiter == PAGE_CACHE else ""
        styles.append(
            [
                "",
                "",
                "num" if n is not None else "num muted",
                limiter_style,
                num_style(entry.ceiling_MBps),
                "muted",
                "num",
                "num",
                num_style(entry.seconds),
            ]
        )
    return Table(
        "table-capacity",
        "Capacity per scenario",
        [
            "scenario",
            "profile",
            "accelerators fed",
            "limiter",
            "read ceiling (MB/s = 10^6 B/s)",
            "ceiling measured by",
            "client cores",
            "probes",
            "search (s)",
        ],
        rows,
        styles,
        caption="Accelerators fed: the most emulated accelerators that pass (at least that many "
        "when even the maximum tried passed; 0 when one already fails). Read ceiling: the "
        "storage's read rate measured before the search, the line the storage limiter is "
        "judged against.",
    )


def _run_cell(probe: CapacityProbe, labels: dict[str, str]) -> tuple[str, str]:
    """The probe's run: its label in this report where its folder was given, else its id."""
    if probe.run_id is None:
        return NOT_MEASURED, "muted"
    if probe.run_id in labels:
        return labels[probe.run_id], ""
    return f"{probe.run_id} (not in this report)", "muted"


def _probe_table(
    index: int,
    result: CapacityResults,
    entry: CapacityScenario,
    labels: dict[str, str],
) -> Table:
    cores = entry.client_cores
    cpu_column = f"CPU (% of {cores} cores)" if cores else "CPU (% of a core)"
    rows, styles = [], []
    previous = None
    ordered = sorted(enumerate(entry.probes), key=lambda item: (item[1].accelerators, item[0]))
    for _, probe in ordered:
        cpu = cpu_share(probe, cores) if cores else probe.metric("cpu_pct")
        numbers = [
            probe.busy_pct,
            probe.busy_pct_min,
            probe.metric("samples_per_s"),
            probe.metric("read_MBps"),
            cpu,
        ]
        evidence = "as above" if probe.evidence == previous else probe.evidence or NOT_MEASURED
        previous = probe.evidence
        verdict = probe.verdict if probe.complete else f"{probe.verdict} (run incomplete)"
        run, run_style = _run_cell(probe, labels)
        rows.append(
            [
                str(probe.accelerators),
                fmt(numbers[0], "%"),
                fmt(numbers[1], "%"),
                fmt(numbers[2], "samples/s"),
                fmt(numbers[3], "MB/s"),
                fmt(numbers[4], "%"),
                verdict,
                probe.limiter,
                evidence,
                run,
            ]
        )
        styles.append(
            [
                "num",
                *map(num_style, numbers),
                probe.verdict,
                "",
                "muted" if evidence == "as above" else "",
                run_style,
            ]
        )
    passes = count_passes(result, entry)
    judged = ", ".join(f"{n}: {'pass' if ok else 'fail'}" for n, ok in passes.items())
    return Table(
        f"table-capacity-probes-{index}",
        f"Probes of {entry.scenario}",
        [
            "accelerators",
            "busy mean (%, measured step)",
            "busy min (%, measured step)",
            "samples/s",
            "read (MB/s = 10^6 B/s)",
            cpu_column,
            "verdict",
            "limiter",
            "evidence",
            "run",
        ],
        rows,
        styles,
        caption="One row per probe (a run at that many emulated accelerators). Busy: compute "
        "time / wall time of the measured steps (the measured step, not DLIO's nominal AU), "
        "the mean over the accelerators and the least busy one. Read: bytes the run's "
        "processes read (/proc), 10^6 B/s. CPU: the "
        "run's processes' CPU time as a share of the client's cores. The limiter is what held "
        f"that probe back, with its evidence in numbers. Counts as the search judged them "
        f"(median of their probes): {judged or NOT_MEASURED}.",
    )


def _chart_caption(entry: CapacityScenario) -> str:
    how = f" ({entry.ceiling_how})" if entry.ceiling_how else ""
    cores = f"{entry.client_cores} cores" if entry.client_cores else "cores"
    return (
        "Left: the mean busy % of the emulated accelerators and the least busy one, against the "
        "thresholds (red); filled points pass, hollow ones fail; green: the answer. Middle: "
        f"bytes read from storage per second, the read ceiling measured before the search{how}, "
        "and the rate the pipeline asked for (what was asked for but not read came from the "
        f"page cache). Right: the run's processes' CPU as a share of the client's {cores}. "
        "A count probed more than once is drawn at the median of its probes (dots: each probe)."
    )


def capacity_section(results: list[CapacityResults], runs: list[Run]) -> Section:
    """The Capacity section for every scenario of every capacity.json given."""
    labels: dict[str, str] = {Path(run.folder).name: run.label for run in runs}
    labels.update({run.run_id: run.label for run in runs})
    entries = [(result, entry) for result in results for entry in result.scenarios]
    blocks: list[Block] = []
    for result in results:
        blocks.append(_thresholds_note(result))
        if not result.complete:
            blocks.append(
                Note(
                    "error",
                    f"{result.path}: the search did not finish "
                    f"({result.stopped or 'no reason recorded'}): the answers below are what it "
                    "had found by then",
                )
            )
    for _, entry in entries:
        warning = _page_cache_note(entry)
        level = "warning" if warning is not None and entry.limiter == PAGE_CACHE else "info"
        blocks.append(Note(level, capacity_sentence(entry)))
        if warning is not None:
            blocks.append(warning)
    if not entries:
        blocks.append(Note("warning", "The capacity results hold no scenario."))
    else:
        blocks.append(_summary_table(entries))
    for index, (result, entry) in enumerate(entries, start=1):
        blocks.append(
            Chart(
                f"fig-capacity-{index}",
                f"Capacity of {entry.scenario}",
                capacity_chart(result, entry),
                _chart_caption(entry),
            )
        )
        blocks.append(_probe_table(index, result, entry, labels))
    return Section(
        "capacity",
        "Capacity: accelerators this storage feeds",
        "How many emulated accelerators this storage and this client keep busy (harness "
        "capacity), and what stops the next one: the study's Figure 7 as curves, utilisation "
        "against the number of accelerators fed. Each probe is a real run with emulated "
        "accelerators (a compute time drawn from a measured profile) and a cold page cache.",
        blocks,
    )
