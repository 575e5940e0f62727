"""Regenerate docs/scenario-reference.md, the field reference of scenario and suite files, from
the scenario model's JSON Schema (``harness.scenario.field_reference_markdown``).

    python tools/gen_scenario_reference.py          # writes the file
    python tools/gen_scenario_reference.py --check  # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "scenario-reference.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # this checkout's harness, whatever the environment has
    from harness.scenario import field_reference_markdown

    text = field_reference_markdown()
    if args.check:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        if current != text:
            print(f"{REFERENCE.relative_to(ROOT)} is stale: run python tools/{Path(__file__).name}")
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
