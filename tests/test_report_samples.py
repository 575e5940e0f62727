"""Held-out samples kept as thumbnails (harness/train/samples.py) and the report's section "What
the model saw and learned", in process on the golden run folders; and the PDF's flow (a section
starts a page only when it does not fit) on a document made here.

The real CLI's runs, the HTML in Chromium and the PDF rasterised are in tests/test_report.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import GOLDEN, copy_golden, tiny_collage_scenario
from PIL import Image

from harness.train import samples as kept


def _entry(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())["thumbnails"]


def _pictures(run: Path, entry: dict[str, Any]) -> list[str]:
    names = [s[k] for s in entry["samples"] for k in ("input", "truth", "prediction") if s[k]]
    collage = entry.get("collage") or {}
    return names + [collage[k] for k in ("image", "mask") if k in collage]


@pytest.mark.parametrize("name", ["collage", "video-cached"])
def test_complete_runs_keep_thumbnails_that_decode(name: str) -> None:
    run = GOLDEN / name
    entry = _entry(run)
    assert len(entry["samples"]) == kept.SAMPLES and entry["no_prediction"] is None
    assert entry["class_names"][0] == "background" and len(entry["class_names"]) == 4
    for sample in entry["samples"]:
        truth = np.asarray(Image.open(run / sample["truth"]))
        guess = np.asarray(Image.open(run / sample["prediction"]))
        with Image.open(run / sample["input"]) as picture:
            assert picture.mode == "RGB" and max(picture.size) <= kept.THUMBNAIL_PX
            assert picture.size == truth.shape[::-1] == guess.shape[::-1]
            assert np.asarray(picture).std() > 1  # pixels, not a blank square
        # masks are class numbers, their palette the report's class colours
        assert truth.max() < 4 and guess.max() < 4
        assert Image.open(run / sample["truth"]).getpalette()[3:6] == list(
            bytes.fromhex(kept.class_colour(1)[1:])
        )
        assert 0 <= sample["pixel_accuracy"] <= 1
        assert sample["pixel_accuracy"] == pytest.approx((truth == guess).mean(), abs=0.02)
    total = sum((run / n).stat().st_size for n in _pictures(run, entry))
    assert total < 150_000, total  # kilobytes
    assert (entry["collage"] is not None) is (name == "collage")
    if name == "collage":
        overview = Image.open(run / entry["collage"]["image"])
        assert max(overview.size) <= kept.OVERVIEW_PX
        assert overview.size == Image.open(run / entry["collage"]["mask"]).size


def test_an_interrupted_run_keeps_none() -> None:
    manifest = json.loads((GOLDEN / "interrupted" / "manifest.json").read_text())
    assert "thumbnails" not in manifest and not (GOLDEN / "interrupted" / kept.FOLDER).exists()


def test_the_seed_fixes_the_samples(tmp_path: Path, cli, write_scenario) -> None:
    """Two runs of one scenario keep the same inputs and truths; another seed, other ones."""
    from harness.run import prepare_run
    from harness.scenario import load_scenario

    scenario = tiny_collage_scenario(tmp_path, dataset__generate__width=256)
    scenario["dataset"]["generate"]["height"] = 160
    scenario["pipeline"]["crop"] = 48
    file = write_scenario(scenario)
    assert cli("datagen", file).returncode == 0

    def keep(folder: Path, *overrides: str) -> dict[str, Any]:
        prepared = prepare_run(load_scenario(file, overrides))
        folder.mkdir()
        return kept.keep_held_out_samples(
            folder,
            source=prepared.source,
            plan=prepared.plan,
            crop=48,
            dataset_manifest=prepared.dataset_manifest,
            no_prediction="emulated run: no model was trained, so there is no prediction",
        )

    first, again = keep(tmp_path / "a"), keep(tmp_path / "b")
    other = keep(tmp_path / "c", "training.seed=5")
    assert "unavailable" not in first and first["seconds"] >= 0  # the time taken is recorded
    for one, two in zip(first["samples"], again["samples"], strict=True):
        assert one["prediction"] is None and one["where"] == two["where"]
        for key in ("input", "truth"):
            picture = (tmp_path / "a" / one[key]).read_bytes()
            assert picture == (tmp_path / "b" / two[key]).read_bytes()
    assert [s["where"] for s in first["samples"]] != [s["where"] for s in other["samples"]]
    assert first["no_prediction"].startswith("emulated run")


def test_a_sample_that_cannot_be_read_costs_the_run_nothing(tmp_path: Path) -> None:
    class Broken:  # a source whose reads fail
        pass

    entry = kept.keep_held_out_samples(
        tmp_path, source=Broken(), plan=None, crop=8, dataset_manifest={"classes": 2}
    )
    assert set(entry) == {"unavailable"} and entry["unavailable"]


# --- the report's section ----------------------------------------------------------------------


def _emulated(run: Path) -> Path:
    """A golden collage run as an emulated run keeps it: no prediction, said why."""
    manifest = json.loads((run / "manifest.json").read_text())
    entry = manifest["thumbnails"]
    for sample in entry["samples"]:
        (run / sample["prediction"]).unlink()
        sample.update(prediction=None, pixel_accuracy=None)
    entry["no_prediction"] = "emulated run: no model was trained, so there is no prediction"
    (run / "manifest.json").write_text(json.dumps(manifest))
    summary = json.loads((run / "summary.json").read_text())
    for name in ("miou", "miou_chance"):
        summary["metrics"].pop(name, None)
    (run / "summary.json").write_text(json.dumps(summary))
    return _rename(run, "golden-emulated")


def _rename(run: Path, name: str) -> Path:
    """The run's scenario under another name, to tell the copy apart in a report."""
    for file, where in (("manifest.json", ("scenario", "name")), ("summary.json", ("scenario",))):
        document = json.loads((run / file).read_text())
        node = document
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = name
        (run / file).write_text(json.dumps(document))
    return run


@pytest.fixture(scope="module")
def section(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any], Path]:
    """The section built from golden runs: collage, video cached, interrupted, an emulated
    collage, and a collage run folder from before thumbnails were kept."""
    from harness.report.runs import load_runs
    from harness.report.sections_samples import samples_section

    root = tmp_path_factory.mktemp("samples")
    for name in ("collage", "video-cached", "interrupted"):
        copy_golden(name, root / name)
    _emulated(copy_golden("collage", root / "emulated"))
    older = copy_golden("collage", root / "older")
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["thumbnails"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    _rename(older, "golden-older")
    runs = load_runs([root])
    return samples_section(runs), runs, root


def test_the_section_shows_each_run_with_its_miou(section) -> None:
    built, runs, _root = section
    charts = {b.id: b for b in built.blocks if hasattr(b, "figure")}
    by_name = {run.scenario_name: run for run in runs}
    # one collage overview (the emulated copy reads the same image), a strip per run kept
    assert [c for c in charts if c.startswith("fig-collage")] == ["fig-collage-1"]
    strips = [c for c in charts.values() if c.id.startswith("fig-samples")]
    assert len(strips) == 3
    for name in ("golden-collage", "golden-video-cached"):
        run = by_name[name]
        (chart,) = [c for c in strips if c.title == f"Held-out samples of {run.label}"]
        miou = run.value("miou")
        assert f"held-out mIoU {miou:.3f}" in chart.caption, chart.caption
        assert "1: " in chart.caption and "rows " in chart.caption  # the samples, named
        axes = chart.figure.axes
        assert len(axes) == 3 * kept.SAMPLES and all(ax.images for ax in axes)
        # masks in the class colours: the legend names the classes drawn
        legend = chart.figure.subfigs[-1].legends[0]
        assert legend.get_texts()[0].get_text() == "background"
    (emulated,) = [c for c in strips if "golden-emulated" in c.title]
    assert "No prediction: emulated run: no model was trained" in emulated.caption
    assert "held-out mIoU: not measured" in emulated.caption
    shown = [ax for ax in emulated.figure.axes if ax.get_title(loc="left") == "prediction"]
    assert len(shown) == kept.SAMPLES and not any(ax.images for ax in shown)
    assert all(" ".join(ax.texts[0].get_text().split()) == "no prediction" for ax in shown)
    (note,) = [b for b in built.blocks if not hasattr(b, "figure")]
    assert "golden-interrupted: the run did not complete" in note.text
    assert "golden-older: its run folder keeps no held-out samples" in note.text


def test_one_class_one_colour_everywhere(section) -> None:
    """The pixels drawn for a mask are the class colours, whatever palette the file has."""
    from harness.report.charts_samples import coloured, read_picture

    _built, runs, _root = section
    run = next(r for r in runs if r.scenario_name == "golden-collage")
    truth = read_picture(run, run.source.thumbnails["samples"][0]["truth"])
    rgb = coloured(truth)
    for value in np.unique(truth):
        colour = bytes.fromhex(kept.class_colour(int(value))[1:])
        assert (rgb[truth == value] == list(colour)).all()
    assert len({kept.class_colour(k) for k in range(64)}) == 64  # distinct, beyond the first
    assert read_picture(run, "../manifest.json") is None  # nothing outside the run folder


# --- the PDF's flow ----------------------------------------------------------------------------


def _document(sections: list[Any]) -> Any:
    from harness.report.content import Document

    for number, section in enumerate(sections, start=1):
        section.number = number
    return Document("t", "s", "now", "0", [], sections)


def _pages(tmp_path: Path, sections: list[Any]) -> list[str]:
    """Each page's text, of the PDF written for ``sections``."""
    from pypdf import PdfReader

    from harness.report.pdf import write_pdf

    path = write_pdf(_document(sections), tmp_path / "flow.pdf")
    return [page.extract_text() for page in PdfReader(path).pages]


def _small_chart(key: str, height: float) -> Any:
    from harness.report.charts import titled_figure
    from harness.report.content import Chart

    figure = titled_figure(f"chart {key}", height)
    figure.subplots().plot([0, 1], [1, 0])
    return Chart(f"fig-{key}", f"chart {key}", figure, f"caption of chart {key}")


def _table(key: str, rows: int) -> Any:
    from harness.report.content import Table

    return Table(f"t-{key}", f"table {key}", ["a", "b"], [[f"r{i}", str(i)] for i in range(rows)])


def test_small_blocks_share_pages_and_keep_their_order(tmp_path: Path) -> None:
    from harness.report.content import Section

    sections = [
        Section("one", "Small one", "", [_table("one", 2)]),
        Section("two", "Small two", "", [_small_chart("two", 1.2)]),
        Section("three", "Small three", "", [_table("three", 2)]),
    ]
    pages = _pages(tmp_path, sections)
    assert len(pages) == 1, [p[:80] for p in pages]  # title, two tables, a chart: one page
    text = " ".join(pages[0].split())
    order = ["table one", "r1 1", "caption of chart two", "table three"]
    positions = [text.index(item) for item in order]
    assert positions == sorted(positions), positions
    assert "chart two" in text.replace("caption of chart two", "")  # the chart's own text


def test_a_section_starts_a_page_only_when_it_does_not_fit(tmp_path: Path) -> None:
    from harness.report.content import Section

    sections = [
        Section("one", "Tall one", "", [_small_chart("one", 4.0)]),
        Section("two", "Tall two", "", [_small_chart("two", 4.0)]),  # does not fit under one
        Section("three", "Short three", "", [_table("three", 4)]),  # two shrinks: it fits
        Section("four", "Long four", "", [_table("four", 29)]),  # a page, and six rows more
    ]
    pages = [" ".join(p.split()) for p in _pages(tmp_path, sections)]
    assert len(pages) == 4, pages
    assert "caption of chart one" in pages[0] and "caption of chart two" not in pages[0]
    assert "caption of chart two" in pages[1] and "table three" in pages[1]
    assert "table four" in pages[2] and "table four (continued)" in pages[3]
    # 26 rows would fit on the third page: the table breaks earlier, never leaving 3 alone
    continued = pages[3].split("(continued)")[-1]
    assert [f"r{i} {i}" in continued for i in range(22, 29)] == [False] + [True] * 6
