"""The runs' metrics in the Prometheus text format (0.0.4) for node_exporter's textfile
collector.

Each summary metric is a gauge ``harness_<name>`` (its name keeps its unit: ``_pct``, ``_ms``,
``_MBps``; the HELP text says it in words), labelled with the scenario and the run id; indexed
metrics (``gpu_util_pct[0]``, ``busy_pct[rank1]``) are one gauge with an ``index`` label. Every
run also has ``harness_run_complete`` (1 or 0) and ``harness_run_finished_timestamp_seconds``,
so that an alert can tell a stale file from a fresh one. No sample carries a timestamp: the
textfile collector refuses them. Metrics not measured are left out, never written as 0.

With ``--target`` the text is written atomically (a temporary file in the same folder, then
renamed), as the textfile collector requires: a file named ``*.prom``, or a folder (then
``harness.prom`` in it).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.metrics_core import Metric

from harness import results
from harness.errors import HarnessError
from harness.export import ExportOptions, finished_epoch_s, headline_metrics, split_index

TEXT = True
PREFIX = "harness_"


def metric_name(name: str) -> str:
    """A Prometheus metric name from a summary metric's base name, in the classic character set
    of format 0.0.4 (newer prometheus_client versions could write UTF-8 names, which the
    textfile collector of format 0.0.4 does not read)."""
    return PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", name)


class _RunsCollector:
    """A prometheus_client collector of the runs' metrics (collected once, when written)."""

    def __init__(self, runs: list[results.RunFolder]) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:  # prometheus_client's collector protocol
        families: dict[str, Metric] = {}

        def add(name: str, help_text: str, labels: dict[str, str], value: float) -> None:
            # a base name may come plain and indexed (busy_pct, busy_pct[rank1]): one family
            # whose samples have an ``index`` label where they have one
            family = families.setdefault(name, Metric(name, help_text, "gauge"))
            family.add_sample(name, labels, value)

        for run in self.runs:
            labels = {"scenario": run.scenario_name, "run_id": run.run_id}
            for name, (value, unit, direction) in headline_metrics(run).items():
                base, index = split_index(name)
                help_text = f"harness summary metric {base}, unit: {unit or 'none'}, {direction}"
                extra = {} if index is None else {"index": index}
                add(metric_name(base), help_text, {**labels, **extra}, value)
            add(
                PREFIX + "run_complete",
                "1 when the run finished, 0 when it was stopped early",
                labels,
                1.0 if run.complete else 0.0,
            )
            stamp = finished_epoch_s(run)
            if stamp is None:
                continue
            add(
                PREFIX + "run_finished_timestamp_seconds",
                "when the run finished, in seconds since the epoch",
                labels,
                stamp,
            )
        yield from families.values()


def registry_of(runs: list[results.RunFolder]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunsCollector(runs))
    return registry


def export(runs: list[results.RunFolder], target: str | None, options: ExportOptions) -> list[str]:
    registry = registry_of(runs)
    if target is None:
        sys.stdout.write(generate_latest(registry).decode())
        return []
    path = Path(target)
    if path.is_dir():
        path = path / "harness.prom"
    if path.suffix != ".prom":
        raise HarnessError(
            f"--target {target}: node_exporter's textfile collector reads only *.prom files; "
            "name a .prom file or a folder"
        )
    try:
        write_to_textfile(str(path), registry)  # a temporary file, then renamed
    except OSError as exc:
        raise HarnessError(f"--target {path}: cannot write: {exc.strerror or exc}") from None
    return [f"prometheus: {path} ({len(runs)} run(s))"]
