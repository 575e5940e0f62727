"""The server's view: a Prometheus text endpoint scraped during the run (``collectors.prometheus``).

A storage server's ``prometheus-node-exporter``, NetApp Harvest or any exporter of the Prometheus
text format: the collector scrapes ``url`` with urllib in its own thread every ``interval_s``
(its rate is 1 / interval_s, apart from the other collectors' ``rate_hz``), parses the text with
``prometheus_client``'s parser and keeps the series its selectors pick (see promseries).

The series are fixed by the first scrape, made when the collector is built: an endpoint that does
not answer then makes the collector ``unavailable`` ("not available: <url>: <reason>") and the run
goes on without it. A series that appears later is not followed; one that disappears reads NaN.
A scrape that fails during the run records NaN and is counted (``server_scrapes_failed``).

Frame: ``t`` (seconds since the run's t0, the middle of the request) and one column per series,
named ``metric{label="value",...}``; counters as served (cumulative), gauges as values.

Summary over the measured window, all context. Counters are rates, from the first and last
scrapes inside the window, with resets (a value going down) counted as restarts from 0:

* ``server_disk_read_MBps``     node_disk_read_bytes_total, summed over the devices (MB = 10^6 B)
* ``server_disk_reads_per_s``   node_disk_reads_completed_total, summed
* ``server_disk_util_pct``      node_disk_io_time_seconds_total's rate x 100, the busiest device
* ``server_net_transmit_MBps``  node_network_transmit_bytes_total, summed over the interfaces
* ``server_cpu_busy_pct``       100 x (1 - idle share) of node_cpu_seconds_total, all cpus
* ``prom_<name>``               any other metric, summed over its series: ``_bytes_total`` in
                                MB/s, ``_seconds_total`` in % (seconds a second x 100), another
                                counter per second, a gauge its mean
* ``server_scrapes_failed``     scrapes that failed during the whole run
"""

from __future__ import annotations

import gzip
import io
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from harness.collect import CollectorContext
from harness.collect.promseries import (
    DEFAULT_METRICS,
    Matcher,
    Selector,
    column_name,
    columns_of,
    label_matcher,
    parse_column,
    parse_selector,
    passes_labels,
    unwrap_resets,
)
from harness.collect.sampler import Collector
from harness.errors import one_line
from harness.stats import counter_rate, metric, window_mean

MB = 1e6
MAX_RESPONSE_BYTES = 32 * 2**20  # node_exporter serves ~0.1-1 MB; a runaway endpoint stops here
DISK_READ_BYTES = "node_disk_read_bytes_total"
NET_TRANSMIT_BYTES = "node_network_transmit_bytes_total"
CPU_SECONDS = "node_cpu_seconds_total"
# (summary metric, node_exporter counter, how its devices combine, factor on the rate, unit)
WELL_KNOWN: tuple[tuple[str, str, Literal["sum", "max"], float, str], ...] = (
    ("server_disk_read_MBps", DISK_READ_BYTES, "sum", 1 / MB, "MB/s"),
    ("server_disk_reads_per_s", "node_disk_reads_completed_total", "sum", 1.0, "/s"),
    ("server_disk_util_pct", "node_disk_io_time_seconds_total", "max", 100.0, "%"),
    ("server_net_transmit_MBps", NET_TRANSMIT_BYTES, "sum", 1 / MB, "MB/s"),
)
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class ScrapeSettings:
    """What to scrape: the collectors.prometheus block, its selectors parsed."""

    url: str
    selectors: tuple[Selector, ...]
    labels: tuple[Matcher, ...] = ()
    interval_s: float = 1.0
    timeout_s: float = 2.0
    name: str = "server"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ScrapeSettings:
        """From the scenario's ``collectors.prometheus`` block, as a dict (validated there)."""
        return cls(
            url=str(options["url"]),
            selectors=tuple(parse_selector(s) for s in options.get("metrics", DEFAULT_METRICS)),
            labels=tuple(label_matcher(k, v) for k, v in (options.get("labels") or {}).items()),
            interval_s=float(options.get("interval_s", 1.0)),
            timeout_s=float(options.get("timeout_s", 2.0)),
            name=str(options.get("name", "server")),
        )


def scrape(url: str, timeout_s: float) -> str:
    """The endpoint's text; OSError (URLError, timeouts) or ValueError when it cannot be had."""
    # gzip: a node_exporter page is ~54 kB plain, ~9 kB compressed, and on a lab link it shares
    # the wire with the reads being measured (the link cross-check counts every byte received)
    headers = {"Accept": "text/plain; version=0.0.4", "Accept-Encoding": "gzip"}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        data = response.read(MAX_RESPONSE_BYTES + 1)
        if response.headers.get("Content-Encoding") == "gzip":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                data = stream.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise ValueError(f"the response is larger than {MAX_RESPONSE_BYTES // 2**20} MiB")
    return data.decode("utf-8", errors="replace")


def _kind(family_type: str, sample_name: str) -> Kind:
    if family_type == "counter":
        return "counter"
    if family_type in ("histogram", "summary", "gaugehistogram") and sample_name.endswith(
        ("_count", "_sum", "_bucket")
    ):
        return "counter"
    if family_type in ("untyped", "unknown") and sample_name.endswith("_total"):
        return "counter"
    return "gauge"


def select(
    text: str, selectors: Sequence[Selector], labels: Sequence[Matcher]
) -> dict[str, tuple[float, Kind]]:
    """column -> (value, counter or gauge) of every served series a selector picks."""
    out: dict[str, tuple[float, Kind]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if any(s.matches(sample.name, sample.labels) for s in selectors) and passes_labels(
                sample.labels, labels
            ):
                column = column_name(sample.name, sample.labels)
                out[column] = (float(sample.value), _kind(family.type, sample.name))
    return out


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return f"{type(err).__name__}: {err}"


class PrometheusCollector(Collector):
    name = "prometheus"

    def __init__(self, *, settings: ScrapeSettings, t0: float) -> None:
        self.settings = settings
        self.source = settings.name  # whose view this is, shown in the report
        self.failed_scrapes = 0
        self.kinds: dict[str, Kind] = {}
        try:
            text = scrape(settings.url, settings.timeout_s)
            chosen = select(text, settings.selectors, settings.labels)
        except Exception as err:  # any failure to reach or read it: the run goes on without it
            super().__init__(rate_hz=1 / settings.interval_s, t0=t0, columns=("t",))
            self.unavailable = one_line(f"not available: {settings.url}: {_reason(err)}", 300)
            return
        self.kinds = {column: kind for column, (_, kind) in sorted(chosen.items())}
        super().__init__(rate_hz=1 / settings.interval_s, t0=t0, columns=("t", *self.kinds))
        if not chosen:
            wanted = ", ".join(sorted({s.name for s in settings.selectors}))
            self.unavailable = one_line(
                f"not available: {settings.url}: it serves no series of {wanted} "
                "that the selectors and labels pick",
                300,
            )

    def _sample(self) -> None:
        began = self._now()
        try:
            served = select(
                scrape(self.settings.url, self.settings.timeout_s),
                self.settings.selectors,
                self.settings.labels,
            )
        except Exception:  # one lost scrape is a gap in the series, not the end of it
            self.failed_scrapes += 1
            served = {}
        t = (began + self._now()) / 2
        self._record([t, *(served.get(c, (math.nan, "gauge"))[0] for c in self.columns[1:])])

    # ------------------------------------------------------------------ results
    def summary(self, start: float, end: float) -> dict[str, dict]:
        if self.unavailable is not None:
            return {}
        frame = self.frame()
        t = frame["t"].to_numpy()
        out: dict[str, dict] = {}
        names = list(dict.fromkeys(parse_column(c)[0] for c in self.kinds))

        def rates(name: str) -> list[float]:
            found = (
                series_rate(t, frame[c].to_numpy(), start, end)
                for c in columns_of(self.kinds, name)
            )
            return [rate for rate in found if rate is not None]

        for key, name, combine, factor, unit in WELL_KNOWN:
            if name in names:
                found = rates(name)
                value = (sum(found) if combine == "sum" else max(found)) * factor if found else None
                out[key] = metric(value, unit, "context")
        if CPU_SECONDS in names:
            out["server_cpu_busy_pct"] = metric(self._cpu_busy(frame, start, end), "%", "context")
        known = {name for _, name, *_ in WELL_KNOWN} | {CPU_SECONDS}
        for name in names:
            if name in known:
                continue
            columns = columns_of(self.kinds, name)
            if self.kinds[columns[0]] == "gauge":
                means = [window_mean(t, frame[c].to_numpy(), start, end) for c in columns]
                known_means = [m for m in means if m is not None]
                value = sum(known_means) if known_means else None
                out[f"prom_{name}"] = metric(value, "", "context")
                continue
            factor, unit = counter_unit(name)
            found = rates(name)
            out[f"prom_{name}"] = metric(sum(found) * factor if found else None, unit, "context")
        out["server_scrapes_failed"] = metric(self.failed_scrapes, "count", "context")
        return out

    def _cpu_busy(self, frame: pd.DataFrame, start: float, end: float) -> float | None:
        t = frame["t"].to_numpy()
        idle = total = 0.0
        for column in columns_of(self.kinds, CPU_SECONDS):
            rate = series_rate(t, frame[column].to_numpy(), start, end)
            if rate is None:
                continue
            total += rate
            if parse_column(column)[1].get("mode") == "idle":
                idle += rate
        return 100.0 * (1.0 - idle / total) if total > 0 else None


def counter_unit(name: str) -> tuple[float, str]:
    """(factor on the rate, unit) of a counter, from its name's suffix."""
    if name.endswith("_bytes_total"):
        return 1 / MB, "MB/s"
    if name.endswith("_seconds_total"):
        return 100.0, "%"
    return 1.0, "/s"


def series_rate(t: np.ndarray, counter: np.ndarray, start: float, end: float) -> float | None:
    """A counter's rate over [start, end] from its first and last scrapes inside it that
    succeeded, resets counted as restarts from 0; None with fewer than two."""
    values = np.asarray(unwrap_resets(counter.tolist()), dtype=np.float64)
    good = np.isfinite(values)
    return counter_rate(t[good], values[good], start, end)


def summed_rate(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(t, rate per second summed over the series of counter ``name``) from the previous
    scrape, resets counted as restarts; empty when the frame has no such series (the report's
    per-scrape line)."""
    columns = columns_of(list(frame.columns), name)
    if not columns or len(frame) < 2:
        return np.array([]), np.array([])
    t = frame["t"].to_numpy(float)
    total = np.zeros(len(t) - 1)
    for column in columns:
        values = np.asarray(unwrap_resets(frame[column].to_numpy(float).tolist()))
        total += np.diff(values) / np.diff(t)  # NaN where a scrape failed
    return t[1:], total


def collector(context: CollectorContext) -> PrometheusCollector:
    """The registry's entry (``harness.registry.COLLECTORS``: "prometheus")."""
    options = context.options.get("prometheus")
    if not options or not options.get("url"):
        raise ValueError("collectors.prometheus.url is required when prometheus is enabled")
    return PrometheusCollector(settings=ScrapeSettings.from_options(options), t0=context.t0)


__all__ = [
    "DEFAULT_METRICS",
    "PrometheusCollector",
    "ScrapeSettings",
    "collector",
    "scrape",
    "select",
    "series_rate",
    "summed_rate",
]
