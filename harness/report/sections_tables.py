"""The report's sections that are tables: the runs, the headline metrics with their threshold
verdicts, the cross-checks and warnings, and the hardware and software of each machine.

Every number goes through :func:`harness.report.content.fmt`, a value that was not measured shows
as a dash (never 0), and a run that stopped early says so in its status cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from harness.report.content import (
    NOT_MEASURED,
    Block,
    Note,
    Section,
    Table,
    fmt,
    fmt_field,
    num_style,
    scaled_bytes,
)
from harness.report.runs import Run
from harness.results.summary_file import DlioBlock
from harness.stats import mean_gpu_util


def _status(run: Run) -> tuple[str, str]:
    """A run's status cell (text, style): complete, or why not."""
    if run.complete:
        return "complete", "pass"
    if not run.has_summary:
        return "INCOMPLETE (no summary)", "fail"
    return f"INCOMPLETE: {run.source.reason or 'no reason recorded'}", "fail"


def _threshold_cell(run: Run) -> tuple[str, str]:
    """A run's thresholds in one cell (text, style): the failed ones first, then unmeasured."""
    verdicts = run.thresholds
    if not verdicts:
        return "no thresholds set", "muted"
    failed = [v.threshold for v in verdicts if v.passed is False]
    not_judged = [v.reason for v in verdicts if v.reason]
    unmeasured = [v.threshold for v in verdicts if v.passed is None and not v.reason]
    if not_judged:  # a lost host: nothing passes
        return not_judged[0], "fail"
    if failed:
        return "FAIL: " + ", ".join(failed), "fail"
    if unmeasured:
        return "not measured: " + ", ".join(unmeasured), "muted"
    return f"pass ({len(verdicts)}/{len(verdicts)})", "pass"


def runs_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for run in runs:
        status, style = _status(run)
        measured = run.value("measured_steps")
        rows.append(
            [
                run.label,
                run.scenario_name,
                run.condition,
                run.machine,
                str((run.manifest and run.manifest.started) or NOT_MEASURED).replace("T", " "),
                fmt(measured, "steps"),
                status,
                run.run_id,
            ]
        )
        styles.append(["", "", "", "", "", "num", style, "muted"])
    table = Table(
        "table-runs",
        "Runs in this report",
        ["run", "scenario", "condition", "machine", "started", "measured steps", "status", "id"],
        rows,
        styles,
    )
    blocks: list[Block] = [table]
    for extra in (hosts_table(runs), emulation_table(runs)):
        if extra is not None:
            blocks.append(extra)
    return Section("runs", "Runs", "Each run, how it was fed and where it ran.", blocks)


def _seconds(value: Any) -> str:
    """A time per step or per sample in ms (a dash when not recorded)."""
    return f"{fmt(float(value) * 1e3)} ms" if isinstance(value, int | float) else NOT_MEASURED


def emulation_rows(emulation: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What a run emulated and from which profile, as (row label, cell) pairs, from the
    ``emulation`` block of its summary (or manifest): None is a run on real compute."""
    if emulation is None:
        return [
            ("compute", "real (trained)"),
            ("preprocessing", "real"),
            ("preprocessing speed factor", NOT_MEASURED),
            ("preprocessing cores", NOT_MEASURED),
            ("server shape", NOT_MEASURED),
        ]
    device = emulation.get("profile_device") or "unknown"
    compute = (
        f"emulated: profile {emulation.get('profile', 'unknown')} ({device}-class, mean step "
        f"{_seconds(emulation.get('profile_mean_step_s'))})"
    )
    if emulation.get("scaling") == "flops":
        compute += f", scaled by FLOPs {fmt(emulation.get('scale'), 'x')}"
    rows = [("compute", compute)]
    if emulation.get("preprocess") == "emulated":
        measured_on = emulation.get("preprocess_profile_cpu") or "unknown CPU"
        cores = emulation.get("preprocess_profile_cores")
        if cores:
            measured_on += f", {cores} cores"
        rows += [
            (
                "preprocessing",
                f"emulated: profile {emulation.get('preprocess_profile', 'unknown')} "
                f"(measured on {measured_on}; {emulation.get('preprocess_profile_format')}, "
                f"mean {_seconds(emulation.get('preprocess_profile_mean_sample_s'))} a sample)",
            ),
            (
                "preprocessing speed factor",
                f"{fmt_field(emulation.get('preprocess_speed'))} (mean "
                f"{_seconds(emulation.get('preprocess_mean_sample_s'))} a sample here)",
            ),
            (
                "preprocessing cores",
                f"{fmt_field(emulation.get('preprocess_cores'))} per "
                f"{emulation.get('preprocess_cores_per', 'host')}",
            ),
        ]
    else:
        rows += [
            ("preprocessing", "real (this client's CPU)"),
            ("preprocessing speed factor", NOT_MEASURED),
            ("preprocessing cores", NOT_MEASURED),
        ]
    server = emulation.get("server")
    shape = NOT_MEASURED
    if isinstance(server, dict):
        shape = f"{server.get('accelerators')} accelerators, {server.get('cores')} cores"
    rows.append(("server shape", shape))
    return rows


def emulation_table(runs: list[Run]) -> Table | None:
    """A column per run: what it emulated and from which profile; None when no run emulated."""
    blocks = [run.emulation for run in runs]
    if all(block is None for block in blocks):
        return None
    columns = [emulation_rows(block) for block in blocks]
    labels = [label for label, _ in columns[0]]
    rows = [[label, *[column[i][1] for column in columns]] for i, label in enumerate(labels)]
    styles = [["", *["muted" if cell == NOT_MEASURED else "" for cell in row[1:]]] for row in rows]
    return Table(
        "table-emulation",
        "What was emulated, and from which profile",
        ["", *[run.label for run in runs]],
        rows,
        styles,
        split_columns=True,
        caption="Emulated compute draws each step's time from a compute profile (harness "
        "calibrate); emulated preprocessing reads the same bytes as the real pipeline, then "
        "waits a per-sample time drawn from a preprocessing profile (harness calibrate "
        "--preprocess), divided by the speed factor, at most the cores given at once: the "
        "test client's CPU is not the limit. A server shape sets accelerators and cores per "
        "server. From summary.json's emulation block (docs/emulation.md).",
    )


def hosts_table(runs: list[Run]) -> Table | None:
    """Per run across several hosts: each host (name, address, node rank), its ranks and its
    share; a lost host's row says so. None when no run had more than one host."""
    rows, styles = [], []
    for run in runs:
        hosts = (run.summary and run.summary.hosts) or []
        if len(hosts) < 2:
            continue
        for host in hosts:
            values = (host.samples_per_s, host.busy_pct, host.read_MBps)
            rows.append(
                [
                    run.label,
                    host.name,
                    host.address,
                    str(host.node_rank),
                    ", ".join(map(str, host.ranks)),
                    *(fmt(v, u) for v, u in zip(values, ("", "%", ""), strict=True)),
                    "lost" if host.lost else "no",
                ]
            )
            styles.append(
                ["", "", "", "num", "num", *map(num_style, values), "fail" if host.lost else ""]
            )
    if not rows:
        return None
    return Table(
        "table-hosts",
        "Hosts of each run across several",
        [
            "run",
            "host",
            "address",
            "node rank",
            "ranks",
            "samples/s",
            "busy %",
            "read (MB/s)",
            "lost",
        ],
        rows,
        styles,
        caption="Each host as it joined at start: hosts in containers or network namespaces "
        "often share a name, so the address and torchrun's node rank say which it was. "
        "samples/s is its ranks' sum over the measured window, busy % their mean, read MB/s "
        "what its collectors counted. A lost host died or hung: the run is incomplete and no "
        "threshold was judged; its figures, where any, stop where it stopped.",
    )


SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    # metric, label, unit shown
    ("samples_per_s", "training throughput (after warm-up)", "samples/s"),
    ("gpu_util_mean", "GPU utilisation (NVML, mean of GPUs)", "%"),
    ("busy_pct", "loop busy % (measured step: compute / wall)", "%"),
    ("data_wait_pct", "waiting for data", "%"),
    ("read_MBps", "storage read (10^6 B/s; source per mount type)", "MB/s"),
    ("requested_MBps", "pipeline asked for (10^6 B/s)", "MB/s"),
    ("fetch_latency_p50_ms", "fetch latency p50", "ms"),
    ("fetch_latency_p99_ms", "fetch latency p99", "ms"),
    ("batch_wait_p50_ms", "batch wait p50", "ms"),
    ("batch_wait_p99_ms", "batch wait p99", "ms"),
    ("cpu_pct", "CPU of the run's processes", "% of a core"),
    ("pipeline_cpu_pct", "  of which its data workers (read, decode, collate)", "% of a core"),
    ("rss_MiB", "memory of the run's processes (RSS)", "MiB"),
    ("loss_first", "training loss, first step", ""),
    ("loss_last", "training loss, last 5 steps", ""),
    ("miou", "held-out mIoU", ""),
    ("miou_chance", "mIoU of always one class", ""),
    ("storage_bytes", "dataset on storage", "bytes"),
    ("distinct_block_pct", "dataset: distinct 4 KiB blocks (dedup)", "%"),
    ("zstd_ratio", "dataset: zstd ratio (compression)", "x"),
    ("cache_bytes", "frame cache on storage", "bytes"),
    ("expansion", "frame cache / videos", "x"),
    ("measured_steps", "measured steps", "steps"),
)


OPTIONAL_ROWS = ("cache_bytes", "expansion", "distinct_block_pct", "zstd_ratio", "pipeline_cpu_pct")


def _summary_value(run: Run, name: str) -> float | None:
    if name == "gpu_util_mean":
        return mean_gpu_util(run.metrics)
    return run.value(name)


def summary_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for name, label, unit in SUMMARY_ROWS:
        values = [_summary_value(run, name) for run in runs]
        if all(v is None for v in values) and name in OPTIONAL_ROWS:
            continue  # no cached run (or older datasets): rows of dashes would say nothing
        if unit == "bytes":
            values, unit = scaled_bytes(values)
        shown_unit = "× (factor)" if unit == "x" else unit
        rows.append([label, shown_unit, *[fmt(v, unit) for v in values]])
        styles.append(["", "muted", *[num_style(v) for v in values]])
    cells = [_threshold_cell(run) for run in runs]
    rows.append(["thresholds", "", *[text for text, _ in cells]])
    styles.append(["", "", *[style for _, style in cells]])
    statuses = [_status(run) for run in runs]
    rows.append(["run status", "", *[text for text, _ in statuses]])
    styles.append(["", "", *[style for _, style in statuses]])
    metrics = Table(
        "table-summary",
        "Headline metrics per run",
        ["metric", "unit", *[run.label for run in runs]],
        rows,
        styles,
        key_columns=2,
        split_columns=True,
        caption="Measured window: the steps after warm-up. kB, MB, GB = 10^3, 10^6, 10^9 bytes; "
        "MiB = 2^20 bytes. Busy % counts the measured steps' compute time; DLIO's AU (nominal "
        "compute, only step 1 left out) and samples/s (every step) are in the next table. — "
        "means not measured.",
    )
    verdict_rows, verdict_styles = [], []
    for run in runs:
        for verdict in run.thresholds:
            states: dict[bool | None, tuple[str, str]] = {
                True: ("pass", "pass"),
                False: ("FAIL", "fail"),
                None: ("not measured", "muted"),
            }
            state = (verdict.reason, "fail") if verdict.reason else states[verdict.passed]
            unit = "%" if verdict.metric.endswith("pct") else ""
            if verdict.metric.endswith("_ms"):
                unit = "ms"
            verdict_rows.append(
                [
                    run.label,
                    verdict.threshold,
                    verdict.metric,
                    fmt(verdict.limit, unit),
                    fmt(verdict.value, unit),
                    state[0],
                ]
            )
            verdict_styles.append(["", "", "muted", "num", num_style(verdict.value), state[1]])
    blocks: list[Block] = [metrics, dlio_table(runs)]
    if verdict_rows:
        blocks.append(
            Table(
                "table-thresholds",
                "Thresholds: pass or fail against each scenario's limits",
                ["run", "threshold", "metric", "limit", "measured", "verdict"],
                verdict_rows,
                verdict_styles,
            )
        )
    else:
        blocks.append(Note("info", "No scenario sets a threshold."))
    return Section(
        "summary",
        "Headline metrics",
        "The numbers a storage team compares, one column per run, with pass or fail against "
        "the thresholds each scenario sets.",
        blocks,
    )


# (label, unit, figure of the run's DLIO block) for dlio_table
DLIO_ROWS: tuple[tuple[str, str, Callable[[DlioBlock], float | str | None]], ...] = (
    ("AU % (DLIO: nominal compute / wall, step 1 left out)", "%", lambda b: b.au_pct),
    ("AU compute time: nominal (drawn) or measured", "", lambda b: b.au_source),
    (
        "samples/s (DLIO: every step, warm-up kept)",
        "samples/s",
        lambda b: b.train_throughput_samples_per_second,
    ),
    ('MiB/s of nominal records (DLIO\'s "MB/s")', "MiB/s", lambda b: b.train_io_MB_per_second),
    ("record length (mean bytes asked per sample)", "bytes", lambda b: b.record_length),
    ("steps per accelerator (warm-up included)", "steps", lambda b: b.steps),
)


def dlio_table(runs: list[Run]) -> Table | Note:
    """The runs' figures by DLIO 2.0.0's definitions (summary.json's ``dlio`` block), a column per
    run, beside the harness's own in the table above."""
    blocks = [run.dlio() for run in runs]
    if all(block is None for block in blocks):
        return Note("info", "No run has a step to compute DLIO's figures from.")
    rows, styles = [], []
    for label, unit, figure in DLIO_ROWS:
        values = [None if block is None else figure(block) for block in blocks]
        cells = [v if isinstance(v, str) else fmt(v, unit) for v in values]
        rows.append([label, unit, *cells])
        styles.append(["", "muted", *["" if isinstance(v, str) else num_style(v) for v in values]])
    return Table(
        "table-dlio",
        "DLIO-comparable figures per run (dlio_benchmark 2.0.0's definitions)",
        ["figure", "unit", *[run.label for run in runs]],
        rows,
        styles,
        key_columns=2,
        split_columns=True,
        caption="As DLIO / MLPerf Storage compute them, one run as one DLIO epoch: AU = the "
        "nominal compute time of every step but the first / (wall time less the first step's "
        "load and compute), mean over accelerators ('measured': the timed compute, where no "
        "nominal time was drawn: real training); samples/s over every step, the first and the "
        "warm-up included, summed over accelerators; MiB/s = samples/s x record length / 2^20, "
        "not bytes read (MiB = 2^20 bytes). harness export --to dlio lists these per run.",
    )


def checks_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for run in runs:
        for check in [] if run.summary is None else run.summary.cross_checks:
            ok = check.get("ok")
            style = "pass" if ok is True else "fail" if ok is False else ""
            rows.append([run.label, str(check.get("name", "")), str(check.get("verdict", ""))])
            styles.append(["", "", style])
    blocks: list[Block] = []
    if rows:
        blocks.append(
            Table(
                "table-checks",
                "Cross-checks",
                ["run", "check", "verdict"],
                rows,
                styles,
                caption="Bytes the kernel counted against bytes the pipeline asked for (they "
                "agree in a cold run), and the loop's busy % against NVML.",
            )
        )
    warnings: dict[str, list[str]] = {}  # one row per warning, naming every run that gave it
    for run in runs:
        for warning in [*run.notes, *([] if run.summary is None else run.summary.warnings)]:
            warnings.setdefault(str(warning), []).append(run.label)
    if warnings:
        blocks.append(
            Table(
                "table-warnings",
                "Warnings",
                ["warning", "runs"],
                [[text, ", ".join(labels)] for text, labels in warnings.items()],
                [["fail" if text.startswith("INCOMPLETE") else "", ""] for text in warnings],
                key_columns=0,
            )
        )
    if not blocks:
        blocks.append(Note("info", "No cross-check or warning recorded."))
    return Section(
        "checks",
        "Checks and warnings",
        "What makes the numbers trustworthy, and what the reader must know before using them.",
        blocks,
    )


def environment_section(runs: list[Run]) -> Section:
    """The machines the runs ran on: their hardware and software (the study's Tables 2 and 3),
    one column per machine."""
    machines = list(dict.fromkeys(run.machine for run in runs))
    intro = "From the runs' manifests; " + (
        "one column per machine." if len(machines) > 1 else f"machine {machines[0]}."
    )
    return Section(
        "environment",
        "Hardware and software",
        intro,
        [
            environment_table(runs, "hardware", "Hardware", "as the study's Table 2"),
            environment_table(runs, "software", "Software", "as the study's Table 3"),
        ],
    )


def environment_table(
    runs: list[Run], key: Literal["hardware", "software"], title: str, like: str
) -> Table | Note:
    """One column per machine (side by side), one row per field; a field that differs between
    runs on one machine (the dataset's path, say) gives each value with the runs that had it.
    One machine's long list is shown as two lists side by side."""
    machines: dict[str, list[Run]] = {}
    for run in runs:
        if run.environment(key) is not None:
            machines.setdefault(run.machine, []).append(run)
    if not machines:
        return Note("warning", f"No run recorded its {key}.")
    fields: list[str] = []
    for members in machines.values():
        for run in members:
            table = run.environment(key) or {}
            for name in table:
                if name not in fields and not _redundant(name, table):
                    fields.append(name)
    rows, styles = [], []
    for name in fields:
        cells = [_environment_cell(members, key, name) for members in machines.values()]
        rows.append([name, *cells])
        styles.append(["", *["muted" if cell.startswith("not ") else "" for cell in cells]])
    columns = ["field", *machines] if len(machines) > 1 else ["field", "value"]
    if len(machines) == 1 and len(rows) > TWO_UP_ROWS:
        half = -(-len(rows) // 2)
        right = [*rows[half:], ["", ""]]
        right_styles = [*styles[half:], ["", ""]]
        rows = [[*a, *b] for a, b in zip(rows[:half], right, strict=False)]
        styles = [
            [sa[0], sa[1], "key", sb[1]] for sa, sb in zip(styles, right_styles, strict=False)
        ]
        columns = ["field", "value", "field", "value"]
    return Table(f"table-{key}", f"{title} ({like})", columns, rows, styles)


TWO_UP_ROWS = 12  # a one-machine table longer than this: two lists side by side


def _environment_cell(members: list[Run], key: Literal["hardware", "software"], name: str) -> str:
    values: dict[str, list[str]] = {}
    for run in members:
        value = (run.environment(key) or {}).get(name)
        values.setdefault(fmt_field(value), []).append(run.label)
    if len(values) == 1:
        return next(iter(values))
    return "; ".join(f"{value} ({', '.join(labels)})" for value, labels in values.items())


def _redundant(name: str, table: dict[str, Any]) -> bool:
    """Byte counts that a sibling field already gives in GB or GiB."""
    if name.endswith("_bytes"):
        stem = name.removesuffix("_bytes")
        return f"{stem}_GB" in table or f"{stem}_GiB" in table
    return False
