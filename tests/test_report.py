"""The report through the real CLI: real runs of the study's three experiments on small data,
reported by ``harness suite --report`` (and ``harness report`` for other run sets), the HTML
opened in headless Chromium, the PDF rasterised and read back.

Chromium and poppler-utils (pdftoppm, pdftotext) are Debian packages; a test that needs one
skips, naming it, where it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, run_harness, tiny_collage_scenario, tiny_video_scenario

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CHART_IDS = (
    "fig-utilisation",
    "fig-gpu-timeline",
    "fig-read-throughput",
    "fig-fetch-latency",
    "fig-batch-wait",
    "fig-stall-breakdown",
    "fig-cpu",
    "fig-footprint",
    "fig-loss",
    "fig-collage-1",
    "fig-samples-1",
    "fig-samples-2",
    "fig-samples-3",
)
SECTIONS = (
    "Headline metrics",
    "Utilisation: the study's Figure 7",
    "GPU utilisation over time",
    "Storage read throughput",
    "Fetch latency and batch wait",
    "Stall breakdown",
    "CPU utilisation",
    "Storage footprint and the trade-off",
    "Training loss",
    "What the model saw and learned",
    "Hardware",
    "Software",
)


FAST = {"steps": 10, "warmup_steps": 2, "model": {"width": 8, "depth": 2}, "eval_samples": 8}
PIPELINE = {"batch_size": 4, "workers": 1, "crop": 64}


def collage(root: Path, name: str) -> dict:
    scenario = tiny_collage_scenario(
        root, name=name, dataset__generate__width=1024, dataset__generate__height=768
    )
    scenario["pipeline"].update(PIPELINE)
    return {**scenario, "training": dict(FAST)}


def video(root: Path, mode: str, name: str) -> dict:
    scenario = tiny_video_scenario(
        root, name=name, pipeline__mode=mode, dataset__generate__frames=48
    )
    scenario["pipeline"].update(PIPELINE)
    return {**scenario, "training": dict(FAST)}


def bench_report():
    """benchmarks/bench_report.py as a module (its synthetic results writer)."""
    spec = importlib.util.spec_from_file_location(
        "bench_report", REPO / "benchmarks" / "bench_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A real suite with its report: the image collage (under a hostile name), video decoded and
    video cached, each a few real U-Net steps on tiny data. (results folder, report folder,
    the suite's stdout)"""
    root = tmp_path_factory.mktemp("report")
    scenarios = {
        "a.yaml": collage(root, name=EVIL),
        "b.yaml": video(root, "decoded", name="tiny-decoded"),
        "c.yaml": video(root, "cached", name="tiny-cached"),
    }
    for name, scenario in scenarios.items():
        (root / name).write_text(yaml.safe_dump(scenario, sort_keys=False))
    (root / "suite.yaml").write_text("name: tiny\nscenarios: [a.yaml, b.yaml, c.yaml]\n")
    results, report = root / "results", root / "report"
    done = run_harness(
        "suite", str(root / "suite.yaml"), "--results", str(results), "--quiet",
        "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return results, report, done.stdout


@pytest.fixture(scope="module")
def suite(suite_run: tuple[Path, Path, str]) -> Path:
    return suite_run[0]


@pytest.fixture(scope="module")
def report(suite_run: tuple[Path, Path, str]) -> tuple[Path, Path]:
    return suite_run[1] / "report.html", suite_run[1] / "report.pdf"


@pytest.mark.slow
def test_the_suite_prepares_its_data_runs_every_scenario_and_ends_with_its_report(
    suite_run: tuple[Path, Path, str],
) -> None:
    results, report, stdout = suite_run
    names = sorted(
        json.loads((f / "summary.json").read_text())["scenario"] for f in results.iterdir()
    )
    assert names == sorted([EVIL, "tiny-cached", "tiny-decoded"])
    # The suite ends with its report, whose paths it prints even with --quiet.
    assert stdout.splitlines()[-2:] == [
        f"report: {report / 'report.html'}",
        f"report: {report / 'report.pdf'}",
    ]


@pytest.mark.slow
def test_html_is_self_contained_with_every_chart(report: tuple[Path, Path]) -> None:
    text = report[0].read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # nothing to fetch or run: no script, no linked file, no remote URL outside XML namespaces
    assert not re.search(r"<script|<link|<img|<iframe|@import|\bsrc=", text, re.IGNORECASE)
    urls = set(re.findall(r"https?://[^\s\"')]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    for chart in CHART_IDS:
        assert re.search(rf'<figure class="chart" id="{chart}">\s*<svg', text), chart
    for title in SECTIONS:
        assert title.replace("'", "&#39;") in text, title
    for name in ("tiny-decoded", "tiny-cached", "97.3 %", "58.1 %", "samples/s", "MB/s"):
        assert name in text, name
    # the held-out pictures are inline, in the charts' SVG
    section = re.search(r'<section id="samples">.*?</section>', text, re.S)
    assert section is not None and section.group(0).count("data:image/png;base64,") >= 3 * 12
    # no GPU here: the loop's busy % stands in, said as such
    assert "in place of GPU utilisation (no GPU sampled)" in text
    assert "NVML" in text and "not available" in text


@pytest.mark.slow
def test_scenario_names_are_escaped(report: tuple[Path, Path]) -> None:
    text = report[0].read_text()
    assert EVIL not in text
    assert text.count(ESCAPED) >= 5  # tables and chart text alike
    svg_text = re.findall(r"<text[^>]*>[^<]*alert\(1\)[^<]*</text>", text)
    assert svg_text and all(ESCAPED in t for t in svg_text)


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile, its console logged to stderr; the whole process
    group is killed should it hang."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    process = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.as_uri(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _console(stderr: str) -> list[str]:
    """Console messages Chromium logs (each ``...:CONSOLE:<line>] "message", source: ...``)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium (apt-get install chromium)")
def test_html_in_headless_chromium(report: tuple[Path, Path], tmp_path: Path) -> None:
    # The check itself works: a page that logs an error is caught.
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><p>x</p><script>console.error('planted')</script>")
    planted = _chromium(tmp_path, control, "--dump-dom")
    assert any("planted" in line for line in _console(planted.stderr)), planted.stderr[-2000:]

    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, report[0], f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.exists(), done.stderr[-2000:]
    assert _console(done.stderr) == []
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # text, tables, a chart: not blank

    # the section "What the model saw and learned" on its own, with the report's styles: its
    # pictures drawn, masks in the class colours
    text = report[0].read_text()
    section = re.search(r'<section id="samples">.*?</section>', text, re.S)
    assert section is not None
    alone = tmp_path / "samples.html"
    alone.write_text(text[: text.index("<main>") + 6] + section.group(0) + "</main></body></html>")
    shot = tmp_path / "samples.png"
    done = _chromium(tmp_path, alone, f"--screenshot={shot}", "--window-size=1280,1600")
    assert shot.exists() and _console(done.stderr) == [], done.stderr[-2000:]
    found = _class_colours(shot)
    assert 0 in found and len(found) >= 3, found  # the collage's classes, drawn

    dom = _chromium(tmp_path, report[0], "--dump-dom")
    assert _console(dom.stderr) == []
    for chart in CHART_IDS:
        assert re.search(rf'<figure class="chart" id="{chart}">\s*<svg', dom.stdout), chart
    assert ESCAPED in dom.stdout and EVIL not in dom.stdout


def _class_colours(picture: Path) -> set[int]:
    """The classes whose colour covers at least 200 pixels of ``picture``."""
    from PIL import Image

    from harness.train.samples import class_colour

    pixels = np.asarray(Image.open(picture).convert("RGB"), dtype=np.int16)
    found = set()
    for k in range(4):
        colour = np.frombuffer(bytes.fromhex(class_colour(k)[1:]), dtype=np.uint8)
        if (np.abs(pixels - colour).max(axis=2) <= 4).sum() >= 200:
            found.add(k)
    return found


def _pdf_tools() -> None:
    for tool in ("pdftoppm", "pdftotext"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt-get install poppler-utils)")


@pytest.mark.slow
def test_pdf_pages_and_text(report: tuple[Path, Path], tmp_path: Path) -> None:
    _pdf_tools()
    pdf = report[1]
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 8 <= len(pages) <= 14, len(pages)  # the blocks flow: small ones share pages
    from PIL import Image

    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"), dtype=np.float64)
        assert pixels.shape[1] > pixels.shape[0]  # A4 landscape
        assert pixels.std() > 5, page.name
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    for title in SECTIONS:
        assert title in flat, title
    for name in (EVIL, "tiny-decoded", "tiny-cached", "97.3 %", "58.1 %", "samples/s"):
        assert name in flat, name
    # the held-out pictures: the page with the strips, rasterised, shows the class colours
    from pypdf import PdfReader

    texts = [" ".join(page.extract_text().split()) for page in PdfReader(pdf).pages]
    strip = next(i for i, page in enumerate(texts, 1) if "Held-out samples: tiny-cached" in page)
    subprocess.run(
        ["pdftoppm", "-r", "60", "-f", str(strip), "-l", str(strip), "-png", str(pdf),
         str(tmp_path / "strip")],
        check=True,
    )  # fmt: skip
    (picture,) = tmp_path.glob("strip-*.png")
    found = _class_colours(picture)
    assert 0 in found and len(found) >= 2, found  # the background and an object class, drawn
    assert "held-out mIoU" in texts[strip - 1] and "Prediction: the trained U-Net" in flat
    # the same numbers as the HTML: the headline table's busy % of each run
    html = report[0].read_text()
    row = re.search(r"loop busy % \(measured step: compute / wall\)</td>(.*?)</tr>", html, re.S)
    assert row is not None
    for value in re.findall(r'class="num">([\d.,]+)</td>', row.group(1)):
        assert value in flat, value


@pytest.mark.slow
def test_held_out_samples_are_the_same_whichever_way_the_frames_are_read(suite: Path) -> None:
    """Decoded and cached runs of the same videos, with the same seed, keep the same inputs
    and truths (the frame cache holds the frames losslessly here); predictions are their own."""
    from PIL import Image

    kept = {}
    for folder in suite.iterdir():
        manifest = json.loads((folder / "manifest.json").read_text())
        kept[manifest["scenario"]["name"]] = (folder, manifest["thumbnails"])
    (decoded, first), (cached, second) = kept["tiny-decoded"], kept["tiny-cached"]
    for one, two in zip(first["samples"], second["samples"], strict=True):
        assert (one["file"], one["frame"], one["top"], one["left"]) == (
            two["file"], two["frame"], two["top"], two["left"]
        )  # fmt: skip
        for key in ("input", "truth"):
            a = np.asarray(Image.open(decoded / one[key]))
            b = np.asarray(Image.open(cached / two[key]))
            assert a.shape == b.shape and (a == b).all(), key
        assert one["prediction"] and two["prediction"]
    assert first["seconds"] >= 0 and second["seconds"] >= 0  # the time taken is recorded


def _copy_run(suite: Path, scenario: str, target: Path) -> Path:
    for folder in suite.iterdir():
        if json.loads((folder / "summary.json").read_text())["scenario"] == scenario:
            shutil.copytree(folder, target)
            return target
    raise AssertionError(scenario)


@pytest.mark.slow
def test_incomplete_runs_are_reported_with_a_visible_note(suite: Path, tmp_path: Path) -> None:
    stopped = _copy_run(suite, "tiny-cached", tmp_path / "runs" / "stopped")
    summary = json.loads((stopped / "summary.json").read_text())
    summary.update(complete=False, reason="interrupted by SIGTERM")
    (stopped / "summary.json").write_text(json.dumps(summary))
    killed = _copy_run(suite, "tiny-decoded", tmp_path / "runs" / "killed")
    (killed / "summary.json").unlink()
    (killed / "series_io.parquet").unlink()
    done = run_harness("report", str(stopped), str(killed), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "out" / "report.html").read_text()
    notes = re.findall(r'<div class="note error"[^>]*>([^<]*)</div>', html)
    assert any("INCOMPLETE: interrupted by SIGTERM" in note for note in notes), notes
    assert any("INCOMPLETE: no summary.json" in note for note in notes), notes
    assert "I/O series not recorded (series_io.parquet is missing)" in html
    _pdf_tools()
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "out" / "report.pdf"), "-"], capture_output=True, text=True
    ).stdout
    assert "INCOMPLETE: interrupted by SIGTERM" in " ".join(text.split())


@pytest.mark.slow
def test_bad_input_exits_2_with_one_line(suite: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_harness("report", str(empty), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {empty}: holds no run (no manifest.json in it or its folders)"
    )
    future = _copy_run(suite, "tiny-cached", tmp_path / "future")
    summary = json.loads((future / "summary.json").read_text())
    summary["format_version"] = 99
    (future / "summary.json").write_text(json.dumps(summary))
    done = run_harness("report", str(future), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {future / 'summary.json'}: format version 99, ")
    summary["format_version"] = 1
    (future / "summary.json").write_text(json.dumps(summary))
    import pyarrow.parquet as pq

    table = pq.read_table(future / "steps.parquet")
    metadata = {**table.schema.metadata, b"harness_format_version": b"7"}
    pq.write_table(table.replace_schema_metadata(metadata), future / "steps.parquet")
    done = run_harness("report", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"error: {future / 'steps.parquet'}: format version 7")
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.slow
def test_one_scenario_on_several_machines_side_by_side(suite: Path, tmp_path: Path) -> None:
    from harness.report import write_report

    here = _copy_run(suite, "tiny-cached", tmp_path / "runs" / "here")
    there = _copy_run(suite, "tiny-cached", tmp_path / "runs" / "there")
    manifest = json.loads((there / "manifest.json").read_text())
    manifest["hardware"].update(
        hostname="gpu-box-2", gpus=[{"index": 0, "name": "NVIDIA H200", "memory_total_GiB": 139.8}]
    )
    (there / "manifest.json").write_text(json.dumps(manifest))
    html, pdf = write_report([here, there], tmp_path / "out")
    text = html.read_text()
    host = json.loads((here / "manifest.json").read_text())["hardware"]["hostname"]
    assert f"tiny-cached on {host} (no GPU)" in text
    assert "tiny-cached on gpu-box-2 (1× NVIDIA H200)" in text
    assert "2 runs of 1 scenario on 2 machines" in text
    hardware = re.search(r'<table id="table-hardware".*?</thead>', text, re.S)
    assert hardware is not None and "gpu-box-2" in hardware.group(0)  # a column per machine
    assert pdf.stat().st_size > 10_000
    one, _ = write_report([here], tmp_path / "one")  # a single run folder, given directly
    text = one.read_text()
    assert "1 run of 1 scenario on 1 machine" in text
    one_run = [c for c in CHART_IDS if not c.startswith(("fig-collage", "fig-samples"))]
    assert all(f'id="{chart}"' in text for chart in [*one_run, "fig-samples-1"])


def test_long_series_are_thinned_for_drawing_only(tmp_path: Path) -> None:
    """Statistics on the full data, at most MAX_POINTS drawn per line."""
    from harness.report import charts, charts_time
    from harness.report.runs import grid, load_runs

    t = np.arange(20_000) / 10.0
    y = np.sin(t) * 10 + 50
    y[12_345] = 500.0  # a spike survives thinning
    thinned = charts.downsample(t, y, 600)
    assert thinned.reduced and thinned.t.size == 600
    assert thinned.high.max() == 500.0 and thinned.low.min() == pytest.approx(y.min())
    assert np.average(thinned.mean, weights=np.full(600, 1.0)) == pytest.approx(y.mean(), 1e-3)
    x, p = charts.cdf_points(np.arange(1, 100_001, dtype=float), 800)
    assert x.size <= 802 and x[-1] == 100_000 and p[-1] == 1.0
    assert (np.diff(x) > 0).all() and (p > 0.999).sum() >= 50  # the tail is drawn densely

    runs = load_runs(bench_report().write_suite(tmp_path / "results", minutes=2.0, hz=10.0))
    rows = grid(runs)
    figure = charts_time.read_throughput(rows)
    for run, ax in zip([r[0] for r in rows], figure.axes, strict=False):
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
        assert lines and all(len(line.get_xdata()) <= charts.MAX_POINTS for line in lines)
        labels = [line.get_label() for line in ax.get_lines()]
        assert f"mean: {run.value('read_MBps'):.2f} MB/s" in labels  # the summary's number
    assert len(runs[0].table("series_io")) == 1200  # the data itself is untouched
