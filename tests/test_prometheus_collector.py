"""The prometheus collector against a real local HTTP server serving node_exporter's text format,
its selectors, the scenario block, and (slow) a real run beside a real prometheus-node-exporter."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_harness, tiny_collage_scenario

from harness.collect.prometheus import PrometheusCollector, ScrapeSettings, summed_rate
from harness.collect.promseries import (
    DEFAULT_METRICS,
    column_name,
    label_matcher,
    parse_column,
    parse_selector,
    passes_labels,
    unwrap_resets,
)
from harness.scenario.model import Collectors


class Exporter:
    """node_exporter's format, its counters set by the test between scrapes."""

    def __init__(self) -> None:
        self.disk_read = {"vda": 0.0, "vdb": 0.0}
        self.disk_reads = {"vda": 0.0, "vdb": 0.0}
        self.io_time = {"vda": 0.0, "vdb": 0.0}
        self.transmit = {"eth0": 0.0, "lo": 0.0}
        self.cpu = {("0", "idle"): 0.0, ("0", "user"): 0.0, ("1", "idle"): 0.0, ("1", "user"): 0.0}
        self.memory_free = 1e9
        self.scrapes = 0
        self.failing = False

    def text(self) -> str:
        lines = [
            "# HELP node_disk_read_bytes_total Bytes read.",
            "# TYPE node_disk_read_bytes_total counter",
        ]
        lines += [
            f'node_disk_read_bytes_total{{device="{d}"}} {v}' for d, v in self.disk_read.items()
        ]
        lines += ["# TYPE node_disk_reads_completed_total counter"]
        lines += [
            f'node_disk_reads_completed_total{{device="{d}"}} {v}'
            for d, v in self.disk_reads.items()
        ]
        lines += ["# TYPE node_disk_io_time_seconds_total counter"]
        lines += [
            f'node_disk_io_time_seconds_total{{device="{d}"}} {v}' for d, v in self.io_time.items()
        ]
        lines += ["# TYPE node_network_transmit_bytes_total counter"]
        lines += [
            f'node_network_transmit_bytes_total{{device="{d}"}} {v}'
            for d, v in self.transmit.items()
        ]
        lines += ["# TYPE node_cpu_seconds_total counter"]
        lines += [
            f'node_cpu_seconds_total{{cpu="{c}",mode="{m}"}} {v}' for (c, m), v in self.cpu.items()
        ]
        lines += [
            "# TYPE node_memory_MemFree_bytes gauge",
            f"node_memory_MemFree_bytes {self.memory_free}",
        ]
        return "\n".join(lines) + "\n"


@pytest.fixture
def exporter() -> Iterator[tuple[Exporter, str]]:
    state = Exporter()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.scrapes += 1
            if state.failing:
                self.send_error(503)
                return
            body = state.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def _collector(url: str, metrics=DEFAULT_METRICS, labels=None) -> PrometheusCollector:
    options = {"url": url, "metrics": list(metrics), "labels": labels or {}, "interval_s": 1.0}
    return PrometheusCollector(settings=ScrapeSettings.from_options(options), t0=0.0)


def _scrape_at(collector: PrometheusCollector, t: float) -> None:
    """One scrape, stamped at ``t`` (the test sets the time base, so rates are exact)."""
    collector._now = lambda: t  # type: ignore[method-assign]
    collector._sample()


def test_rates_are_what_was_served(exporter) -> None:
    state, url = exporter
    collector = _collector(url, [*DEFAULT_METRICS, "node_memory_MemFree_bytes"])
    assert collector.unavailable is None
    assert 'node_network_transmit_bytes_total{device="lo"}' not in collector.columns  # != "lo"
    for t in range(5):  # 2 s per step: vda reads 4 MB/s, vdb 1 MB/s; vda busy 50 %, vdb 80 %
        state.disk_read.update(vda=t * 8e6, vdb=t * 2e6)
        state.disk_reads.update(vda=t * 200.0, vdb=t * 20.0)
        state.io_time.update(vda=t * 1.0, vdb=t * 1.6)
        state.transmit.update(eth0=t * 6e6, lo=t * 1e9)
        state.cpu.update({("0", "idle"): t * 1.5, ("0", "user"): t * 0.5})
        state.cpu.update({("1", "idle"): t * 0.5, ("1", "user"): t * 1.5})
        state.memory_free = 1e9 + t * 1e6
        _scrape_at(collector, 2.0 * t)
    summary = collector.summary(0.0, 8.0)
    assert summary["server_disk_read_MBps"] == {
        "value": 5.0,
        "unit": "MB/s",
        "direction": "context",
    }
    assert summary["server_disk_reads_per_s"]["value"] == 110.0
    assert summary["server_disk_util_pct"]["value"] == 80.0  # the busiest device
    assert summary["server_net_transmit_MBps"]["value"] == 3.0  # lo left out
    assert summary["server_cpu_busy_pct"]["value"] == 50.0
    assert summary["prom_node_memory_MemFree_bytes"]["value"] == 1e9 + 2e6  # mean over the window
    assert summary["server_scrapes_failed"]["value"] == 0
    frame = collector.frame()
    assert frame['node_disk_read_bytes_total{device="vda"}'].tolist() == [0, 8e6, 16e6, 24e6, 32e6]
    t, read = summed_rate(frame, "node_disk_read_bytes_total")
    assert t.tolist() == [2, 4, 6, 8] and read.tolist() == [5e6] * 4


def test_labels_filter_what_has_the_label_and_selectors_narrow(exporter) -> None:
    _, url = exporter
    collector = _collector(
        url,
        [
            "node_disk_read_bytes_total",
            "node_cpu_seconds_total",
            'node_network_transmit_bytes_total{device=~"e.*"}',
        ],
        labels={"device": "vdb"},
    )
    columns = set(collector.columns)
    assert 'node_disk_read_bytes_total{device="vdb"}' in columns
    assert 'node_disk_read_bytes_total{device="vda"}' not in columns
    assert 'node_cpu_seconds_total{cpu="0",mode="idle"}' in columns  # cpu lacks device: kept
    assert not any(c.startswith("node_network") for c in columns)  # eth0 is not vdb
    assert "server_net_transmit_MBps" not in collector.summary(0, 1)


def test_counter_reset_and_failed_scrapes(exporter) -> None:
    state, url = exporter
    collector = _collector(url, ["node_disk_read_bytes_total"])
    for t, value in enumerate([100.0, 300.0, 50.0, 250.0]):  # restarted between 1 and 2
        state.disk_read.update(vda=value, vdb=0.0)
        _scrape_at(collector, float(t))
    state.failing = True
    _scrape_at(collector, 4.0)
    summary = collector.summary(0.0, 4.0)
    # 200 + 50 (from 0 after the restart) + 200 bytes over 3 s; the failed scrape is a gap
    assert summary["server_disk_read_MBps"]["value"] == pytest.approx(450 / 3 / 1e6)
    assert summary["server_scrapes_failed"]["value"] == 1
    assert unwrap_resets([5.0, 2.0, float("nan"), 4.0])[:2] == [5.0, 7.0]


def test_unreachable_url_is_unavailable_and_run_goes_on() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    collector = _collector(url)
    assert collector.unavailable is not None
    assert collector.unavailable.startswith(f"not available: {url}: ")
    assert "\n" not in collector.unavailable
    collector.start()
    collector.stop()
    assert collector.summary(0, 1) == {} and list(collector.frame().columns) == ["t"]


def test_collector_thread_scrapes_at_its_interval(exporter) -> None:
    _, url = exporter
    options = {"url": url, "interval_s": 0.05}
    collector = PrometheusCollector(
        settings=ScrapeSettings.from_options(options), t0=time.monotonic()
    )
    collector.start()
    time.sleep(0.5)
    collector.stop()
    assert collector.error is None
    assert 5 <= len(collector.frame()) <= 13  # ~10 scrapes and the final one


def test_selectors_parse_and_columns_reverse() -> None:
    selector = parse_selector('node_cpu_seconds_total{mode!="idle", cpu=~"1|2",}')
    assert selector.name == "node_cpu_seconds_total"
    assert [(m.label, m.op, m.value) for m in selector.matchers] == [
        ("mode", "!=", "idle"),
        ("cpu", "=~", "1|2"),
    ]
    assert selector.matches("node_cpu_seconds_total", {"mode": "user", "cpu": "1"})
    assert not selector.matches("node_cpu_seconds_total", {"mode": "user", "cpu": "12"})  # anchored
    assert not selector.matches("node_cpu_seconds_total", {"mode": "idle", "cpu": "1"})
    for bad in ("node{device=vda}", "9node", 'node{device=~"("}', 'node{device="a" x}'):
        with pytest.raises(ValueError):
            parse_selector(bad)
    labels = {"device": 'we"ird\\name', "a": "1"}
    column = column_name("node_x_total", labels)
    assert column == 'node_x_total{a="1",device="we\\"ird\\\\name"}'
    assert parse_column(column) == ("node_x_total", labels)
    assert parse_column("up") == ("up", {})
    assert passes_labels({"device": "nvme0n1"}, [label_matcher("device", "=~nvme.*")])
    assert not passes_labels({"device": "lo"}, [label_matcher("device", "!=lo")])


def test_scenario_block() -> None:
    assert "prometheus" not in Collectors().enabled  # optional: it needs a URL
    with pytest.raises(ValueError, match=r"collectors\.prometheus\.url is required"):
        Collectors.model_validate({"enabled": ["io", "prometheus"]})
    with pytest.raises(ValueError, match="bad regular expression"):
        Collectors.model_validate(
            {"prometheus": {"url": "http://h:9100/metrics", "metrics": ['x{a=~"("}']}}
        )
    block = Collectors.model_validate(
        {
            "enabled": ["prometheus"],
            "prometheus": {"url": "http://h:9100/metrics", "labels": {"device": "vda"}},
        }
    )
    assert block.prometheus.metrics == list(DEFAULT_METRICS) and block.prometheus.name == "server"
    for bad in (
        {"url": "ftp://h"},
        {"url": "http://h", "interval_s": 0},
        {"url": "http://h", "labels": {"9x": "a"}},
    ):
        with pytest.raises(ValueError):
            Collectors.model_validate({"prometheus": bad})


def test_validate_names_the_field(tmp_path: Path, write_scenario) -> None:
    scenario = tiny_collage_scenario(tmp_path)
    scenario["collectors"] = {"enabled": ["io", "prometheus"]}
    done = run_harness("validate", str(write_scenario(scenario)))
    assert done.returncode == 2
    assert "collectors.prometheus.url is required" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_real_run_beside_node_exporter(tmp_path: Path, write_scenario) -> None:
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        pytest.skip(
            "prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)"
        )
    port = _free_port()
    exporter = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):  # it listens within a fraction of a second
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        scenario = tiny_collage_scenario(
            tmp_path, dataset__generate__width=256, dataset__generate__height=192
        )
        scenario["training"] = {
            "steps": 30,
            "warmup_steps": 2,
            "model": {"width": 8, "depth": 2},
            "eval_samples": 4,
        }
        scenario["pipeline"].update({"batch_size": 4, "workers": 1})
        scenario["collectors"] = {
            "rate_hz": 20,
            "enabled": ["io", "cpu", "prometheus"],
            "prometheus": {"url": url, "interval_s": 0.1, "name": "storage-host"},
        }
        path = write_scenario(scenario)
        assert run_harness("datagen", str(path)).returncode == 0
        results = tmp_path / "results"
        done = run_harness("run", str(path), "--results", str(results))
        assert done.returncode == 0, done.stderr
        assert "server (storage-host): " in done.stdout
        folder = next(p for p in results.iterdir() if p.is_dir())
        assert any(folder.glob("series_prometheus.*"))
        metrics = json.loads((folder / "summary.json").read_text())["metrics"]
        assert metrics["server_disk_read_MBps"]["value"] is not None
        assert 0 <= metrics["server_cpu_busy_pct"]["value"] <= 100
        made = run_harness("report", str(folder), "--out", str(tmp_path / "report"))
        assert made.returncode == 0, made.stderr
        html = (tmp_path / "report" / "report.html").read_text()
        assert 'id="fig-server-view"' in html and "view: storage-host" in html
    finally:
        exporter.kill()
        exporter.wait()
