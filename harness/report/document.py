"""The report's content, once: sections of tables, charts and notes that both writers render.

The HTML and the PDF are two renderings of one :class:`Document`, so that they cannot disagree:
the same sections in the same order, the same numbers formatted by the same function. Values are
kept as strings here (formatted with their unit) and are escaped by the writers, never here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

import harness
from harness.report import charts
from harness.report.runs import Run, by_category, grid

ROWS_PER_FIGURE = 3  # per-run panels per figure: one A4 page in the PDF, one screen in the HTML
NOT_MEASURED = "—"


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    # per cell: space-separated style words the writers map to looks: "num" (a number, aligned
    # right), "muted", "pass", "fail"
    styles: list[list[str]] = field(default_factory=list)
    key_columns: int = 1  # leading columns: bold, and repeated when a wide table is split (PDF)
    caption: str = ""
    split_columns: bool = False  # a column per run: split over pages (PDF) rather than squeezed


@dataclass
class Chart:
    id: str
    title: str
    figure: Figure
    caption: str = ""


@dataclass
class Note:
    level: str  # "error" (incomplete run), "warning", "info"
    text: str


Block = Table | Chart | Note


@dataclass
class Section:
    id: str
    title: str
    intro: str
    blocks: list[Block]
    number: int = 0


@dataclass
class Document:
    title: str
    subtitle: str
    generated: str
    harness_version: str
    notes: list[Note]
    sections: list[Section]

    def charts(self) -> list[Chart]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Chart)]


# --- formatting ---------------------------------------------------------------------------------


def fmt(value: float | int | None, unit: str = "") -> str:
    """A number as the report prints it: precision that suits its size, the unit's convention
    (% with one decimal, x for factors), and a dash for "not measured" (never 0)."""
    if value is None:
        return NOT_MEASURED
    v = float(value)
    if unit == "x":
        return f"{v:.1f}×"
    if unit in ("%", "% of a core"):
        return f"{v:.1f}"
    if unit in ("steps", "samples", "count"):
        return f"{v:,.0f}"
    magnitude = abs(v)
    if magnitude >= 1000:
        return f"{v:,.0f}"
    if magnitude >= 100:
        return f"{v:.1f}"
    if magnitude >= 10:
        return f"{v:.2f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{v:.3f}" if unit == "" else f"{v:.2f}"
    return f"{v:.3f}" if magnitude >= 0.001 else f"{v:.2e}"


def fmt_field(value: Any) -> str:
    """A hardware or software table value: lists and dicts flattened to one readable line."""
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if not value:
            return NOT_MEASURED
        return "; ".join(fmt_field(item) for item in value)
    if isinstance(value, dict):
        if "name" in value and "index" in value:  # a GPU
            memory = value.get("memory_total_GiB")
            extra = f", {memory} GiB" if isinstance(memory, int | float) else ""
            return f"{value['index']}: {value['name']}{extra}"
        return ", ".join(f"{k}={fmt_field(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _status(run: Run) -> tuple[str, str]:
    if run.complete:
        return "complete", "pass"
    if not run.has_summary:
        return "INCOMPLETE (no summary)", "fail"
    return f"INCOMPLETE: {run.summary.get('reason') or 'no reason recorded'}", "fail"


def _threshold_cell(run: Run) -> tuple[str, str]:
    verdicts = run.summary.get("thresholds") or []
    if not verdicts:
        return "no thresholds set", "muted"
    failed = [v["threshold"] for v in verdicts if v.get("pass") is False]
    unmeasured = [v["threshold"] for v in verdicts if v.get("pass") is None]
    if failed:
        return "FAIL: " + ", ".join(failed), "fail"
    if unmeasured:
        return "not measured: " + ", ".join(unmeasured), "muted"
    return f"pass ({len(verdicts)}/{len(verdicts)})", "pass"


# --- sections -----------------------------------------------------------------------------------


def build_document(runs: list[Run]) -> Document:
    """Every section of the report for these runs; figures are built here, once."""
    scenarios = list(dict.fromkeys(run.scenario_name for run in runs))
    machines = list(dict.fromkeys(run.machine for run in runs))
    subtitle = (
        f"{len(runs)} run{'s' * (len(runs) != 1)} of {len(scenarios)} scenario"
        f"{'s' * (len(scenarios) != 1)} on {len(machines)} machine{'s' * (len(machines) != 1)}"
    )
    notes = [Note("error", f"{run.label}: {text}") for run in runs for text in run.notes]
    gpu_runs = [run for run in runs if run.gpu_utils()]
    if not gpu_runs:
        notes.append(
            Note(
                "info",
                "No GPU was sampled in any run: where the study shows GPU utilisation, this "
                "report shows the loop's busy % (compute time / wall time), labelled as such.",
            )
        )
    sections = [
        _runs_section(runs),
        _summary_section(runs),
        _figure7_section(runs),
        _gpu_section(runs),
        _grid_section(
            "read-throughput",
            "Storage read throughput",
            "Bytes the run's processes (training process and data workers) read from storage, "
            "per second (/proc/<pid>/io read_bytes). Dashed: the mean over the measured window; "
            "dotted: the rate the pipeline asked for. A read rate far below the asked rate means "
            "the page cache served the data. Long series are drawn as bucket means with a "
            "min–max band; the means are computed from every sample.",
            runs,
            charts.read_throughput,
        ),
        _latency_section(runs),
        _stall_section(runs),
        _grid_section(
            "cpu",
            "CPU utilisation",
            "The run's processes as a share of all the machine's cores (100 % = every core busy "
            "with this run), and the whole machine's mean core utilisation.",
            runs,
            charts.cpu_timeline,
        ),
        _footprint_section(runs),
        _loss_section(runs),
        _checks_section(runs),
        _environment_section(runs, "hardware", "Hardware", "as the study's Table 2"),
        _environment_section(runs, "software", "Software", "as the study's Table 3"),
    ]
    for number, section in enumerate(sections, start=1):
        section.number = number
    return Document(
        title="Storage-to-GPU throughput report",
        subtitle=subtitle,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        harness_version=harness.__version__,
        notes=notes,
        sections=sections,
    )


def _runs_section(runs: list[Run]) -> Section:
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
                str(run.manifest.get("started") or NOT_MEASURED).replace("T", " "),
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
    return Section("runs", "Runs", "Each run, how it was fed and where it ran.", [table])


SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    # metric, label, unit shown
    ("samples_per_s", "training throughput", "samples/s"),
    ("gpu_util_mean", "GPU utilisation (NVML, mean of GPUs)", "%"),
    ("busy_pct", "loop busy (compute / wall time)", "%"),
    ("data_wait_pct", "waiting for data", "%"),
    ("read_MBps", "storage read", "MB/s"),
    ("requested_MBps", "pipeline asked for", "MB/s"),
    ("fetch_latency_p50_ms", "fetch latency p50", "ms"),
    ("fetch_latency_p99_ms", "fetch latency p99", "ms"),
    ("batch_wait_p50_ms", "batch wait p50", "ms"),
    ("batch_wait_p99_ms", "batch wait p99", "ms"),
    ("cpu_pct", "CPU of the run's processes", "% of a core"),
    ("rss_MiB", "memory of the run's processes (RSS)", "MiB"),
    ("loss_first", "training loss, first step", ""),
    ("loss_last", "training loss, last 5 steps", ""),
    ("miou", "held-out mIoU", ""),
    ("miou_chance", "mIoU of always one class", ""),
    ("storage_bytes", "dataset on storage", "bytes"),
    ("cache_bytes", "frame cache on storage", "bytes"),
    ("expansion", "frame cache / videos", "x"),
    ("measured_steps", "measured steps", "steps"),
)


def _summary_value(run: Run, name: str) -> float | None:
    if name == "gpu_util_mean":
        gpus = run.gpu_utils()
        return sum(gpus) / len(gpus) if gpus else None
    return run.value(name)


def _scaled_bytes(values: list[float | None]) -> tuple[list[float | None], str]:
    """Byte counts in one decimal unit that suits the largest (kB, MB, GB, TB)."""
    divisor, unit = charts.byte_unit(max((v for v in values if v is not None), default=0))
    return [None if v is None else v / divisor for v in values], unit


def _num(value: float | None) -> str:
    return "num" if value is not None else "num muted"


def _summary_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for name, label, unit in SUMMARY_ROWS:
        values = [_summary_value(run, name) for run in runs]
        if all(v is None for v in values) and name in ("cache_bytes", "expansion"):
            continue  # no cached run: rows of dashes would say nothing
        if unit == "bytes":
            values, unit = _scaled_bytes(values)
        shown_unit = "× (factor)" if unit == "x" else unit
        rows.append([label, shown_unit, *[fmt(v, unit) for v in values]])
        styles.append(["", "muted", *[_num(v) for v in values]])
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
        "MiB = 2^20 bytes. — means not measured.",
    )
    verdict_rows, verdict_styles = [], []
    for run in runs:
        for verdict in run.summary.get("thresholds") or []:
            state = {True: ("pass", "pass"), False: ("FAIL", "fail")}.get(
                verdict.get("pass"), ("not measured", "muted")
            )
            unit = "%" if str(verdict.get("metric", "")).endswith("pct") else ""
            if str(verdict.get("metric", "")).endswith("_ms"):
                unit = "ms"
            verdict_rows.append(
                [
                    run.label,
                    str(verdict.get("threshold")),
                    str(verdict.get("metric")),
                    fmt(verdict.get("limit"), unit),
                    fmt(verdict.get("value"), unit),
                    state[0],
                ]
            )
            verdict_styles.append(["", "", "muted", "num", _num(verdict.get("value")), state[1]])
    blocks: list[Block] = [metrics]
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


def _figure7_section(runs: list[Run]) -> Section:
    chart = Chart(
        "fig-utilisation",
        "Average utilisation per scenario",
        charts.utilisation_bars(runs),
        "The study (WP-7300) measured 97.3 % average GPU utilisation training from the frame "
        "cache and 58.1 % decoding frames during training (dashed lines). Where no GPU was "
        "sampled, the bar is the loop's busy % (compute time / wall time, hatched), the "
        "measure MLPerf Storage calls accelerator utilisation.",
    )
    return Section(
        "figure-7",
        "Utilisation: the study's Figure 7",
        "Can this storage keep the accelerators busy, and how much does each way of feeding "
        "them cost in utilisation?",
        [chart],
    )


def _chunks(rows: list[list[Run | None]]) -> list[list[list[Run | None]]]:
    return [rows[i : i + ROWS_PER_FIGURE] for i in range(0, len(rows), ROWS_PER_FIGURE)]


def _grid_charts(key: str, title: str, runs: list[Run], build) -> list[Chart]:
    _machines, rows = grid(by_category(runs))
    parts = _chunks(rows)
    out = []
    for index, part in enumerate(parts, start=1):
        suffix = "" if len(parts) == 1 else f" (part {index} of {len(parts)})"
        chart_id = f"fig-{key}" if index == 1 else f"fig-{key}-{index}"
        out.append(Chart(chart_id, title + suffix, build(part)))
    return out


def _grid_section(key: str, title: str, intro: str, runs: list[Run], build) -> Section:
    return Section(key, title, intro, list(_grid_charts(key, title, runs, build)))


def _gpu_section(runs: list[Run]) -> Section:
    title = "GPU utilisation over time"
    intro = "NVML utilisation of every GPU, sampled at the collectors' rate. Grey: warm-up."
    if any(charts.has_gpu_series(run) for run in runs):
        return _grid_section("gpu-timeline", title, intro, runs, charts.gpu_timeline)
    _machines, rows = grid(by_category(runs))  # one compact chart saying why, for every run
    return Section(
        "gpu-timeline", title, intro, [Chart("fig-gpu-timeline", title, charts.gpu_timeline(rows))]
    )


def _latency_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for run in by_category(runs):
        count = charts.measured_latencies(run).size
        values = [run.value(f"fetch_latency_{p}_ms") for p in ("p50", "p90", "p99", "p99.9")]
        waits = [run.value(f"batch_wait_{p}_ms") for p in ("p50", "p99")]
        rows.append([run.label, fmt(count, "count"), *[fmt(v, "ms") for v in values + waits]])
        styles.append(["", "num", *[_num(v) for v in values + waits]])
    table = Table(
        "table-latency",
        "Fetch latency per sample and wait per batch (ms)",
        [
            "run",
            "samples",
            "fetch p50",
            "fetch p90",
            "fetch p99",
            "fetch p99.9",
            "batch wait p50",
            "batch wait p99",
        ],
        rows,
        styles,
        caption="Fetch latency: one sample's read + decode + transform in the worker, over the "
        "samples of the measured steps. Batch wait: the loop's wait for its next batch.",
    )
    blocks: list[Block] = [
        table,
        Chart(
            "fig-fetch-latency",
            "Fetch latency CDF",
            charts.latency_cdf(runs),
            "Left: the share of samples fetched within x ms. Right: the share slower than x, on "
            "a log scale, where the tail (p99, p99.9) can be read off.",
        ),
    ]
    blocks += _grid_charts("batch-wait", "Per-batch wait", runs, charts.batch_wait)
    return Section(
        "latency",
        "Fetch latency and batch wait",
        "How long one sample takes to arrive, and how long the training loop waits for a batch: "
        "the loop only stalls when the workers together fall behind.",
        blocks,
    )


def _stall_section(runs: list[Run]) -> Section:
    return Section(
        "stalls",
        "Stall breakdown",
        "Of the measured steps' wall time: the share spent computing (the loop busy %), the share "
        "spent waiting for the next batch, and the rest.",
        [Chart("fig-stall-breakdown", "Stall breakdown", charts.stall_breakdown(runs))],
    )


def _footprint_section(runs: list[Run]) -> Section:
    ordered = by_category(runs)
    both, unit = _scaled_bytes(
        [r.value("storage_bytes") for r in ordered] + [r.value("cache_bytes") for r in ordered]
    )
    stored, cached = both[: len(ordered)], both[len(ordered) :]
    rows, styles = [], []
    for run, dataset, cache in zip(ordered, stored, cached, strict=True):
        value, source = run.utilisation()
        what = "" if value is None else (" GPU" if source == "gpu" else " busy")
        expansion = run.value("expansion")
        rows.append(
            [
                run.label,
                run.category,
                fmt(dataset, unit),
                fmt(cache, unit),
                fmt(expansion, "x"),
                fmt(value, "%") + what,
            ]
        )
        styles.append(["", "", _num(dataset), _num(cache), _num(expansion), _num(value)])
    table = Table(
        "table-footprint",
        f"Storage footprint ({unit}) and utilisation",
        [
            "run",
            "experiment",
            f"dataset ({unit})",
            f"frame cache ({unit})",
            "expansion",
            "utilisation (%)",
        ],
        rows,
        styles,
        caption="kB, MB, GB = 10^3, 10^6, 10^9 bytes. Utilisation: NVML GPU where a GPU was "
        "sampled, else the loop's busy %.",
    )
    chart = Chart(
        "fig-footprint",
        "Storage footprint vs utilisation",
        charts.footprint(runs),
        "Decoding during training stores only the compressed videos but costs CPU and "
        "utilisation; the frame cache buys utilisation with many times the storage (the study "
        "notes 10× or more).",
    )
    return Section(
        "footprint",
        "Storage footprint and the trade-off",
        "What each way of feeding the GPUs stores, and the utilisation it buys.",
        [chart, table],
    )


def _loss_section(runs: list[Run]) -> Section:
    return Section(
        "training",
        "Training loss",
        "Every run trains a real U-Net: the loss falls, and the held-out mIoU beats the score "
        "of always guessing one class.",
        [Chart("fig-loss", "Training loss", charts.loss_curves(runs))],
    )


def _checks_section(runs: list[Run]) -> Section:
    rows, styles = [], []
    for run in runs:
        for check in run.summary.get("cross_checks") or []:
            ok = check.get("ok")
            style = {True: "pass", False: "fail"}.get(ok, "")
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
        for warning in [*run.notes, *(run.summary.get("warnings") or [])]:
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


def _environment_section(runs: list[Run], key: str, title: str, like: str) -> Section:
    """One column per machine (side by side), one row per field; a field that differs between
    runs on one machine (the dataset's path, say) gives each value with the runs that had it."""
    machines: dict[str, list[Run]] = {}
    for run in runs:
        if isinstance(run.manifest.get(key), dict):
            machines.setdefault(run.machine, []).append(run)
    if not machines:
        return Section(key, title, "", [Note("warning", f"No run recorded its {key}.")])
    fields: list[str] = []
    for members in machines.values():
        for run in members:
            table = run.manifest[key]
            for name in table:
                if name not in fields and not _redundant(name, table):
                    fields.append(name)
    rows, styles = [], []
    for name in fields:
        cells = [_environment_cell(members, key, name) for members in machines.values()]
        rows.append([name, *cells])
        styles.append(["", *["muted" if cell.startswith("not ") else "" for cell in cells]])
    columns = ["field", *machines] if len(machines) > 1 else ["field", "value"]
    intro = f"From the runs' manifests ({like})"
    intro += "; one column per machine." if len(machines) > 1 else f"; machine {runs[0].machine}."
    return Section(
        key, title, intro, [Table(f"table-{key}", f"{title} ({like})", columns, rows, styles)]
    )


def _environment_cell(members: list[Run], key: str, name: str) -> str:
    values: dict[str, list[str]] = {}
    for run in members:
        values.setdefault(fmt_field(run.manifest[key].get(name)), []).append(run.label)
    if len(values) == 1:
        return next(iter(values))
    return "; ".join(f"{value} ({', '.join(labels)})" for value, labels in values.items())


def _redundant(name: str, table: dict[str, Any]) -> bool:
    """Byte counts that a sibling field already gives in GB or GiB."""
    if name.endswith("_bytes"):
        stem = name.removesuffix("_bytes")
        return f"{stem}_GB" in table or f"{stem}_GiB" in table
    return False
