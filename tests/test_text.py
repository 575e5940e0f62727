"""Names that cannot inject: ``validate`` refuses control and bidirectional-override characters in
scenario and suite names (naming the character and where), and every other user string is shown
as escapes at each output: the terminal and CI log (a ``::error`` line cannot be forged), the
GitHub step summary, JUnit XML (well-formed), HTML and JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import copy_golden, tiny_collage_scenario

from harness.text import unsafe_character, visible, xml_text

# a forged workflow command on its own line, an OSC title, BEL, NUL, a right-to-left override
HOSTILE = "ok\n::error title=x::forged\x1b]0;title\x07\x00\u202eevil\x01"
SHOWN = "ok\\x0a::error title=x::forged\\x1b]0;title\\x07\\x00\\u202eevil\\x01"
ACTING = ("\n::error", "\x1b", "\x07", "\x00", "\u202e", "\x01")


def test_visible_shows_every_acting_character_as_an_escape() -> None:
    assert visible(HOSTILE) == SHOWN
    assert visible("plain ascii, ümlaut, 日本") == "plain ascii, ümlaut, 日本"
    assert visible("\x7f\x9b\u2028\u2066\ud800\uffff") == "\\x7f\\x9b\\u2028\\u2066\\ud800\\uffff"


def test_xml_text_keeps_line_breaks_and_escapes_what_xml_forbids() -> None:
    assert xml_text("a\tb\nc\r") == "a\tb\nc\r"
    assert xml_text("a\x00b\x01\x1b\ufffe\u202e") == "a\\x00b\\x01\\x1b\\ufffe\\u202e"


def test_unsafe_character_names_the_character_and_its_position() -> None:
    assert unsafe_character("ok\n::error") == "U+000A at character 3"
    assert unsafe_character("abc\u202e") == "U+202E at character 4"
    assert unsafe_character("an ordinary name, ümlaut") is None


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("ok\n::error title=x::forged", "U+000A at character 3"),
        ("x\x1b]0;t\x07", "U+001B at character 2"),
        ("nul\x00", "U+0000 at character 4"),
        ("abc\u202eevil", "U+202E at character 4"),
    ],
)
def test_validate_refuses_control_and_bidi_characters_in_names(
    tmp_path: Path, cli, name: str, where: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_collage_scenario(tmp_path, name=name), sort_keys=False))
    done = cli("validate", path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:1:7: name: ") and where in lines[0], lines[0]
    assert not any(char in lines[0] for char in ACTING)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": name, "scenarios": []}))
    assert where in cli("validate", suite).stderr


def test_a_file_name_is_shown_escaped_by_validate(tmp_path: Path, cli) -> None:
    path = tmp_path / "s\x1b[31m.yaml"
    path.write_text(yaml.safe_dump(tiny_collage_scenario(tmp_path), sort_keys=False))
    done = cli("validate", path)
    assert done.returncode == 0 and "s\\x1b[31m.yaml" in done.stdout and "\x1b" not in done.stdout
    missing = cli("validate", tmp_path / "gone\n::error::x.yaml")
    assert missing.returncode == 2 and "\n::error" not in missing.stderr


def _hostile_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two golden runs whose summary.json (hand-edited, or from an older harness) names the
    scenario and a metric with every acting character."""
    sides = []
    for side in ("base", "cur"):
        run = copy_golden("collage", tmp_path / side)
        summary = json.loads((run / "summary.json").read_text())
        summary["scenario"] = HOSTILE
        summary["metrics"][f"m{HOSTILE}"] = {"value": 1.0, "unit": "u", "direction": "higher"}
        summary["warnings"] = [f"w {HOSTILE}"]
        (run / "summary.json").write_text(json.dumps(summary))
        sides.append(run)
    return sides[0], sides[1]


def test_compare_shows_hostile_names_escaped_in_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    base, cur = _hostile_runs(tmp_path)
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    junit = tmp_path / "junit.xml"
    done = cli("compare", base, cur, "--junit", junit)
    assert done.returncode == 0, done.stderr
    for text in (done.stdout, done.stderr, step_summary.read_text()):  # terminal, CI log, summary
        assert SHOWN in text or text == done.stderr
        assert not any(char in text for char in ACTING[1:])
        assert not any(line.startswith("::") for line in text.splitlines())
    names = {suite.get("name") for suite in ET.parse(junit).getroot()}  # well-formed XML
    assert names == {SHOWN}
    document = json.loads(cli("compare", base, cur, "--json", "-").stdout)
    assert document["scenarios"][0]["scenario"] == HOSTILE  # JSON escapes it itself


def test_run_summary_lines_show_hostile_text_escaped(tmp_path: Path) -> None:
    from harness import results
    from harness.summary_lines import summary_lines

    base, _cur = _hostile_runs(tmp_path)
    summary = results.RunFolder.read(base).summary
    assert summary is not None
    lines = summary_lines(summary, base)
    assert lines[0].startswith(SHOWN)
    assert f"  warning: w {SHOWN}" in lines
    assert not any(char in "".join(lines) for char in ACTING[1:])


def test_the_html_report_shows_hostile_text_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.report import document
    from harness.report.html import render_html
    from harness.report.runs import load_inputs
    from harness.report.sections_tables import checks_section, runs_section, summary_section

    base, _cur = _hostile_runs(tmp_path)
    monkeypatch.setattr(  # the tables, not the figures: they take seconds to draw
        document,
        "_run_sections",
        lambda runs: [runs_section(runs), summary_section(runs), checks_section(runs)],
    )
    runs, capacity = load_inputs([base])
    text = render_html(document.build_document(runs, capacity), runs)
    assert "\\x1b]0;title\\x07\\x00\\u202eevil\\x01" in text
    assert not any(char in text for char in ("\x1b", "\x07", "\x00", "\u202e", "\x01"))
