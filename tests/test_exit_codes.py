"""The one table of exit codes: ``harness.errors.ExitCode`` and the README's "Exit codes" table
say the same, and the CLI returns them."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from harness.cli import main
from harness.errors import ExitCode

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_exit_codes() -> dict[str, int]:
    """The rows of the table under the README's "## Exit codes" heading, as name -> code."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| .+ \|$", section, flags=re.MULTILINE)
    return {name: int(code) for code, name in rows}


def test_the_readme_table_is_the_enum() -> None:
    assert readme_exit_codes() == {member.name: member.value for member in ExitCode}


def test_signals_map_to_128_plus_their_number() -> None:
    assert ExitCode.for_signal("SIGINT") == 128 + signal.SIGINT == ExitCode.INTERRUPTED
    assert ExitCode.for_signal("SIGTERM") == 128 + signal.SIGTERM == ExitCode.TERMINATED


def test_bad_input_is_two(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "missing.yaml")]) == ExitCode.BAD_INPUT == 2
    assert str(tmp_path / "missing.yaml") in capsys.readouterr().err
