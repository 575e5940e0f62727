"""The report's Capacity section, in process: ``write_report`` given capacity.json (the example
in tests/data/capacity/) beside a golden run folder, a capacity.json alone, files refused in one
line, and hostile strings escaped. The PDF is read back with pdftotext (poppler-utils)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Result, copy_golden

from harness.errors import HarnessError

# In-process, but each test draws a whole report (matplotlib PDF, ~2–10 s): not the fast tier.
pytestmark = pytest.mark.slow

EXAMPLE = REPO / "tests" / "data" / "capacity" / "example-capacity.json"
PROBE_RUN = "20261202T061313Z-tiny-cap-bbc236"  # the example's first probe's run folder
EVIL = "<script>alert(1)</script> $x$"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; $x$"
SENTENCE = (
    "This storage and this client feed 1 test-class accelerator (flat-20ms) reading tiny-cap; "
    "limited by page cache: 100% of the bytes asked for came from memory"
)


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def write_capacity(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "capacity.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def pdf_text(pdf: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("needs pdftotext (apt-get install poppler-utils)")
    done = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(done.stdout.split())


def html_text(html: Path) -> str:
    """The page's text, tags dropped and entities decoded, whitespace collapsed."""
    text = re.sub(r"<svg.*?</svg>", " ", html.read_text(), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _probe(count: int, busy: float, least: float, read: float, cpu: float, limiter: str) -> dict:
    return {
        "accelerators": count,
        "busy_pct": busy,
        "busy_pct_min": least,
        "complete": True,
        "verdict": "pass" if busy >= 90 and least >= 85 else "fail",
        "limiter": limiter,
        "evidence": f"read {read:.1f} MB/s of the 1000.0 MB/s ceiling",
        "page_cache_hit_share": 0.0,
        "metrics": {
            "samples_per_s": 100.0 * count * busy / 100,
            "busy_pct": busy,
            "busy_pct_min": least,
            "read_MBps": read,
            "requested_MBps": read,
            "cpu_pct": cpu,
            "a_later_metric": 1.5,  # a field from a later harness: ignored
        },
        "run": f"results/run-{count}-{busy}",
        "reason": None,
        "a_later_field": {"kept": True},
    }


def storage_limited() -> dict[str, Any]:
    """A search that doubled to 16, bisected back to 10 and repeated 10 and 11 three times;
    plus a second scenario capped at its maximum of 4."""
    document = example()
    document["thresholds"].update(max_accelerators=16, repeat=3)
    document["a_later_field"] = [1, 2]  # readers accept unknown extra fields
    entry = copy.deepcopy(document["scenarios"][0])
    entry.update(scenario="big-storage", client_cores=32, max_accelerators=10, capped=False)
    entry["profile"].update(profile="h200-unet-w64-512-bf16-b16", profile_device="NVIDIA H200")
    entry["ceiling_MBps"] = 1000.0
    shape = [(1, 99, 98, 95), (2, 99, 98, 190), (4, 98.5, 97, 380), (8, 97, 95, 760)]
    shape += [(16, 60, 52, 930), (12, 80, 74, 925), (10, 93, 90, 900), (11, 88, 84, 915)]
    shape += [(10, 92, 89, 898), (10, 91, 88, 901), (11, 87, 83, 916), (11, 89, 86, 914)]
    entry["probes"] = [
        _probe(n, busy, least, read, 40.0 * n, "storage" if read >= 900 else "none")
        for n, busy, least, read in shape
    ]
    entry.update(limiter="storage", limiter_evidence="read 915.0 MB/s, 92% of the ceiling")
    capped = copy.deepcopy(entry)
    capped.update(scenario="capped", max_accelerators=4, capped=True, limiter="none")
    capped["limiter_evidence"] = "read 380.0 of 1000.0 MB/s, CPU 160 % of 3200 %"
    capped["probes"] = [_probe(n, 99, 98, 95.0 * n, 40.0 * n, "none") for n in (1, 2, 4)]
    document["scenarios"] = [entry, capped]
    return document


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """The example capacity.json (given as its folder) beside a golden run folder named as the
    example's first probe, and a richer capacity.json given as a file."""
    from harness.report import write_report

    root = tmp_path_factory.mktemp("capacity-report")
    run = copy_golden("collage", root / "results" / PROBE_RUN)
    folder = root / "search"
    write_capacity(folder, example())
    rich = write_capacity(root / "rich", storage_limited())
    html, pdf = write_report([run, folder, rich], root / "out")
    return html, pdf, html_text(html), pdf_text(pdf)


def test_the_section_sentence_and_numbers_in_html_and_pdf(report: tuple) -> None:
    html, _, shown, printed = report
    page = html.read_text()
    assert '<section id="capacity">' in page
    for chart in ("fig-capacity-1", "fig-capacity-2", "fig-capacity-3"):
        assert re.search(rf'<figure class="chart" id="{chart}">\s*<svg', page), chart
    for text in (printed, shown):
        assert "Capacity: accelerators this storage feeds" in text
        assert SENTENCE in text
        assert "not a storage result" in text
        # the example's probes: busy mean and min, samples/s, read MB/s, CPU of 2 cores
        for number in ("96.3", "87.0", "86.8", "179.4", "294.1", "0.025", "16.7", "27.8"):
            assert number in text, number
        assert "35.02" in text  # the read ceiling
        assert "fio failed (fio: blocksize is larger than data set range)" in text
        # the richer search: an answer bisected to 10, a limiter, a capped lower bound
        assert (
            "This storage and this client feed 10 NVIDIA H200-class accelerators "
            "(h200-unet-w64-512-bf16-b16) reading big-storage; limited by storage: read 915.0 "
            "MB/s, 92% of the ceiling." in text
        )
        assert "feed at least 4 NVIDIA H200-class accelerators" in text
        assert "10: pass, 11: fail" in text  # judged on the medians of the repeats
        # the probe run given alongside is reported as usual, and named in the probe table
        assert "golden-collage" in text
        assert "7961e8 (not in this report)" in text  # the PDF may wrap the id at its dashes
    assert "20261202T061320Z-tiny-cap-7961e8 (not in this report)" in shown
    probes = re.search(r'<table id="table-capacity-probes-1".*?</table>', page, re.S)
    assert probes is not None
    first = re.findall(r"<tr>(.*?)</tr>", probes.group(0), re.S)[1]  # after the header row
    assert "golden-collage" in first and first.count('class="pass"') == 1


def test_the_sections_come_in_the_same_order_in_html_and_pdf(report: tuple) -> None:
    _, _, shown, printed = report
    titles = [
        "Utilisation: the study's Figure 7",
        "Capacity: accelerators this storage feeds",
        "GPU utilisation over time",
        "Probes of tiny-cap",
        "Probes of big-storage",
        "Probes of capped",
    ]
    for text in (shown, printed):
        at = [text.find(title, text.find("Reference") + 1) for title in titles]
        assert all(i >= 0 for i in at), at
    # the section after the study's Figure 7, in the table of contents and the PDF's list
    assert "3 Utilisation: the study's Figure 7; 4 Capacity" in printed
    html_order = [shown.rfind(t) for t in titles[3:]]
    pdf_order = [printed.rfind(t) for t in titles[3:]]
    assert html_order == sorted(html_order) and pdf_order == sorted(pdf_order)


def test_chart_lines_are_the_medians(tmp_path: Path) -> None:
    from harness.report.capacity_data import read_capacity
    from harness.report.charts_capacity import capacity_chart

    result = read_capacity(write_capacity(tmp_path, storage_limited()))
    entry = result.scenarios[0]
    assert entry.counts() == [1, 2, 4, 8, 10, 11, 12, 16]
    figure = capacity_chart(result, entry)
    busy, reads, cpu = figure.axes
    mean = next(line for line in busy.get_lines() if line.get_label() == "mean busy")
    assert list(mean.get_xdata()) == [1, 2, 4, 8, 10, 11, 12, 16]
    assert list(mean.get_ydata()) == [99, 99, 98.5, 97, 92, 88, 80, 60]  # medians of 10 and 11
    labels = [line.get_label() for line in busy.get_lines()]
    assert "--min-busy 90 %" in labels and "--min-busy-each 85 %" in labels
    assert any(text.get_text() == "answer: 10" for text in busy.texts)
    assert "read ceiling 1000.0 MB/s" in [line.get_label() for line in reads.get_lines()]
    share = next(line for line in cpu.get_lines() if line.get_label() == "the run's processes")
    assert list(share.get_ydata())[:2] == [40.0 / 32, 80.0 / 32]  # % of the 32 cores
    capped = capacity_chart(result, result.scenarios[1])
    assert any(text.get_text() == "answer: at least 4" for text in capped.axes[0].texts)


def test_sentences_for_none_capped_and_an_unfinished_search(tmp_path: Path) -> None:
    from harness.report.capacity_data import read_capacity
    from harness.report.sections_capacity import capacity_sentence

    document = example()
    entry = document["scenarios"][0]
    entry.update(max_accelerators=0)
    del entry["limiter"], entry["limiter_evidence"]  # stopped before naming it
    document["complete"], document["stopped"] = False, "interrupted by SIGINT"
    scenario = read_capacity(write_capacity(tmp_path, document)).scenarios[0]
    text = capacity_sentence(scenario)
    assert text.startswith(
        "So far (the search did not finish), this storage and this client feed no test-class "
        "accelerator (flat-20ms) reading tiny-cap: even one stays below the busy thresholds; "
        "limited by page cache: "  # the last probe's limiter
    )
    document = example()
    document["hosts"] = 2  # clients probing together: N per client, and the total
    document["scenarios"][0]["max_accelerators"] = 4
    scenario = read_capacity(write_capacity(tmp_path / "two", document)).scenarios[0]
    assert capacity_sentence(scenario).startswith(
        "This storage and these 2 clients feed 4 test-class accelerators per client (8 in all; "
        "flat-20ms) reading tiny-cap; limited by page cache: "
    )


def test_a_capacity_json_alone_makes_a_report_of_that_section(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    folder = tmp_path / "search"
    write_capacity(folder, storage_limited())
    done = cli("report", str(folder), "--out", str(tmp_path / "out"))  # a folder holding one
    assert done.returncode == 0, done.stderr
    html, pdf = tmp_path / "out" / "report.html", tmp_path / "out" / "report.pdf"
    shown = html_text(html)
    assert "capacity of 2 scenarios" in shown
    assert "Only capacity results were given" in shown
    assert "1 Capacity: accelerators this storage feeds" in pdf_text(pdf)
    assert "Headline metrics" not in shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, "format version 2, this harness reads version 1"),
        ({"format": "harness-run-summary"}, "not a harness-capacity file"),
        (
            {"scenarios": [{"scenario": "s", "probes": [{"accelerators": "four"}]}]},
            "scenarios[0].probes[0].accelerators: expected a whole number, found 'four'",
        ),
        ({"scenarios": {"s": 1}}, "scenarios: expected a list"),
    ],
)
def test_a_bad_capacity_json_is_refused_in_one_line(
    tmp_path: Path, cli: Callable[..., Result], change: dict, message: str
) -> None:
    from harness.report import write_report

    path = write_capacity(tmp_path / "search", {**example(), **change})
    with pytest.raises(HarnessError) as error:
        write_report([path], tmp_path / "out")
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)
    done = cli("report", str(path.parent), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {error.value}"]
    assert not (tmp_path / "out" / "report.html").exists()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(HarnessError, match=r"broken\.json: cannot read"):
        write_report([broken], tmp_path / "out")


def test_hostile_scenario_names_and_evidence_are_escaped(tmp_path: Path) -> None:
    from harness.report import write_report

    document = example()
    entry = document["scenarios"][0]
    entry["scenario"] = EVIL
    entry["limiter_evidence"] = "<img src=x onerror=alert(2)> & more"
    entry["probes"][0]["limiter"] = "<b>storage</b>"
    html, pdf = write_report([write_capacity(tmp_path / "search", document)], tmp_path / "out")
    page = html.read_text()
    assert "<script>alert" not in page and "<img" not in page and "<b>storage" not in page
    assert page.count(ESCAPED) >= 4  # sentence, notes, tables, chart titles
    assert "&lt;img src=x onerror=alert(2)&gt; &amp; more" in page
    assert "&lt;b&gt;storage&lt;/b&gt;" in page
    svg_text = re.findall(r"<text[^>]*>[^<]*alert\(1\)[^<]*</text>", page)
    assert svg_text and all("&lt;script&gt;" in t for t in svg_text)
    printed = pdf_text(pdf)
    assert f"reading {EVIL}; limited by page cache: <img src=x onerror=alert(2)> & more" in printed
