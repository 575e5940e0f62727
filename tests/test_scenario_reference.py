"""The field reference (docs/scenario-reference.md) is generated from the scenario and suite
JSON Schemas: it must match them, and every field must say what it is."""

from __future__ import annotations

from pathlib import Path

from harness.scenario import field_reference_markdown, scenario_json_schema, suite_json_schema
from harness.scenario.reference import REGENERATE

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "scenario-reference.md"


def test_committed_reference_matches_the_schema() -> None:
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == field_reference_markdown(), (
        f"docs/scenario-reference.md is stale (the scenario model changed): regenerate it with "
        f"`{REGENERATE}` and commit it"
    )


def test_every_model_and_field_has_a_description() -> None:
    undocumented = []
    for schema in (scenario_json_schema(), suite_json_schema()):
        models = {"(root)": schema, **schema["$defs"]}
        for name, model in models.items():
            if not model.get("description"):
                undocumented.append(name)
            for field, details in model["properties"].items():
                if not details.get("description"):
                    undocumented.append(f"{name}.{field}")
    assert not undocumented, f"give these a Field(description=...): {undocumented}"


def test_reference_has_a_row_per_field() -> None:
    text = field_reference_markdown()
    for row in (
        "| `pipeline.workers` | integer | `2` | 0 to 1024 (processes or threads on one host) |",
        "| `dataset.generate.size` | `5x-ram` or null | unset |",
        "| `capacity.min_busy` | number | `90` | > 0, <= 100 |",
    ):
        assert row in text
