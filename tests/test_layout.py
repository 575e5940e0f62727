"""The README's Layout and the import-linter contract describe the tree as it is: every module and
package directly under harness/ is named in both, and every file the Layout names exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"


def _top_level_names() -> set[str]:
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    return names


def _layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```", readme, re.S | re.M)
    assert match, "README.md has no '## Layout' section with a code block"
    return match.group(1)


def _layout_entries() -> list[tuple[str, str]]:
    """(path named at the start of a line, the rest of that line and its continuation lines)."""
    entries: list[tuple[str, str]] = []
    for line in _layout_block().splitlines():
        head = re.match(r"^(\S+(?:, \S+)*)\s{2,}(.*)$", line)
        if head:
            entries.append((head.group(1), head.group(2)))
        elif line.startswith(" ") and entries:
            path, text = entries[-1]
            entries[-1] = (path, text + " " + line.strip())
    return entries


def test_layout_names_every_top_level_module_and_package():
    named: set[str] = set()
    for paths, _ in _layout_entries():
        first = paths.split(", ")[0]
        folder = first.rsplit("/", 2)[0] if first.endswith("/") else first.rsplit("/", 1)[0]
        for path in paths.split(", "):
            full = path if "/" in path else f"{folder}/{path}"
            if full.startswith("harness/"):
                named.add(full.removeprefix("harness/").rstrip("/").removesuffix(".py"))
    missing = sorted(_top_level_names() - {n.split("/")[0] for n in named})
    assert not missing, f"README Layout does not name: {', '.join(missing)}"


def test_every_file_the_layout_names_exists():
    absent = []
    for paths, text in _layout_entries():
        first = paths.split(", ")[0]
        folder = first if first.endswith("/") else first.rsplit("/", 1)[0] + "/"
        for path in paths.split(", "):
            full = path if "/" in path else folder + path
            head, _, last = full.rpartition("/")
            for choice in last.split("|"):  # scenarios/quick|paper: both
                if not (ROOT / head / choice).exists():
                    absent.append(f"{head}/{choice}")
        if first.endswith("/") and first.startswith("harness/"):
            # modules named in a package's description live in that package
            for module in re.findall(r"\b([a-z_]+\.py)\b", text):
                if not (ROOT / first / module).exists():
                    absent.append(first + module)
    assert not absent, f"README Layout names files that do not exist: {', '.join(absent)}"


def test_layer_contract_covers_every_top_level_module():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    named = {name.strip().strip("()") for layer in layers for name in re.split(r"[|:]", layer)}
    missing = sorted(_top_level_names() - named)
    assert not missing, f"the import-linter layers in pyproject.toml leave out: {missing}"
