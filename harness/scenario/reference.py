"""The field reference of scenario and suite files (docs/scenario-reference.md), generated from
their JSON Schemas, so that it says what ``harness validate --schema`` says and cannot drift from
the model: one table per model, each field with its path, type, default, bounds and description.

Regenerate it with ``python tools/gen_scenario_reference.py``; tests/test_scenario_reference.py
fails when the committed file is stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.scenario.loading import scenario_json_schema, suite_json_schema

JsonSchema = dict[str, object]

REGENERATE = "python tools/gen_scenario_reference.py"

_HEADER = f"""# Scenario and suite file reference

<!-- Generated from the JSON Schema of the scenario model by `{REGENERATE}`:
do not edit by hand (tests/test_scenario_reference.py fails when this file is stale). -->

Every field of a scenario file and of a suite file, as `harness validate` checks them.
`harness validate --schema` prints the same schema as JSON, for editors' YAML language servers;
`harness show FILE` prints a scenario with every default filled in. Types are YAML's: `null` (or
leaving the key out, where it has a default) means unset. A count's upper bound holds on any
machine and says why in brackets; limits of the machine that runs a scenario are checked when
`harness run` starts. Units are in the field names and descriptions: `_s` seconds, `_ms`
milliseconds, `_pct` and `%` per cent, `_hz` samples a second, `kbps` 1000 bits a second.
"""


@dataclass
class _Table:
    """One model's table: its name, the field paths that lead to it, its schema."""

    name: str
    schema: JsonSchema
    places: list[str] = field(default_factory=list)  # e.g. "dataset.generate (kind image_collage)"


def _refs(schema: object) -> Iterator[str]:
    """Model names referenced anywhere inside a property's schema, in order."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for key, value in schema.items():
            if key not in ("$ref", "default", "discriminator"):
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _tables(root: JsonSchema, root_name: str) -> list[_Table]:
    """Every model reachable from ``root``, each after the model that holds it (depth first, in
    field order), with the places it sits at."""
    definitions = _as_dict(root.get("$defs", {}))
    tables = {root_name: _Table(root_name, root, [""])}

    def visit(name: str, prefix: str) -> None:
        for prop, prop_schema in _properties(tables[name].schema).items():
            for ref in _refs(prop_schema):
                place = f"{prefix}{prop}"
                if (
                    place
                    not in tables.setdefault(ref, _Table(ref, _as_dict(definitions[ref]))).places
                ):
                    tables[ref].places.append(place)
                    visit(ref, f"{place}.")

    visit(root_name, "")
    return list(tables.values())


def _as_dict(value: object) -> JsonSchema:
    assert isinstance(value, dict), value
    return value


def _properties(schema: JsonSchema) -> dict[str, JsonSchema]:
    properties = schema.get("properties", {})
    assert isinstance(properties, dict)
    return properties


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 2**32 and value.bit_count() == 1:
        return f"2^{value.bit_length() - 1}"  # a seed's bound
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _type(schema: JsonSchema) -> str:
    """A field's type in words: links for models, choices for enums."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [_type(_as_dict(option)) for option in _as_list(schema[union])]
            joined = " or ".join(options)
            discriminator = schema.get("discriminator")
            if isinstance(discriminator, dict):
                joined += f", by `{discriminator['propertyName']}`"
            return joined
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " or ".join(f"`{value}`" for value in _as_list(schema["enum"]))
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(_as_dict(schema.get('items', {})))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of string to {_type(_as_dict(schema['additionalProperties']))}"
    return str(kind)


def _as_list(value: object) -> list[object]:
    assert isinstance(value, list), value
    return value


def _bounds(schema: JsonSchema) -> str:
    """The limits of a field's value (of its non-null choice), with the reason of the upper one."""
    parts: list[str] = []
    for option in _as_list(schema.get("anyOf", [schema])):
        option = _as_dict(option)
        if option.get("type") == "null":
            continue
        parts.extend(_value_bounds(option))
        if isinstance(option.get("additionalProperties"), dict):
            keys = _as_dict(option.get("propertyNames", {}))
            if "maxLength" in keys:
                parts.append(f"names of at most {keys['maxLength']} characters")
            values = _value_bounds(_as_dict(option["additionalProperties"]))
            if values:
                parts.append("values " + " and ".join(values))
    return ", ".join(parts)


def _value_bounds(schema: JsonSchema) -> list[str]:
    """A number's range and a text's, list's or map's length, in words."""
    reason = f" ({schema['x-limit-reason']})" if "x-limit-reason" in schema else ""
    parts: list[str] = []
    if "minimum" in schema and "maximum" in schema:  # the common case reads as a range
        parts.append(f"{_number(schema['minimum'])} to {_number(schema['maximum'])}{reason}")
    else:
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">")):
            if key in schema:
                parts.append(f"{sign} {_number(schema[key])}")
        for key, sign in (("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in schema:
                parts.append(f"{sign} {_number(schema[key])}{reason}")
    for low_key, high_key, unit in (
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
        ("minProperties", "maxProperties", "entries"),
    ):
        if low_key in schema and high_key in schema:
            parts.append(f"{_number(schema[low_key])} to {_number(schema[high_key])} {unit}")
        elif high_key in schema:
            parts.append(f"at most {_number(schema[high_key])} {unit}")
        elif low_key in schema:
            parts.append(f"at least {_number(schema[low_key])} {unit}")
    return parts


def _default(schema: JsonSchema, required: bool) -> str:
    if required:
        return "required"
    if "default" not in schema:
        return ""
    value = schema["default"]
    if value is None:
        return "unset"
    if isinstance(value, dict) and value:
        return "its fields' defaults"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"`{_number(value)}`"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_markdown(table: _Table, level: str) -> list[str]:
    schema = table.schema
    required = set(_as_list(schema.get("required", [])))
    lines = [f"{level} {table.name}", ""]
    places = [place for place in table.places if place]
    kind = _properties(schema).get("kind", {}).get("const")  # a dataset's discriminator
    when = f", when its `kind` is `{kind}`" if kind else ""
    if places:
        lines += ["At " + ", ".join(f"`{place}`" for place in places) + when + ".", ""]
    if "description" in schema:
        lines += [_cell(str(schema["description"])), ""]
    lines += ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
    prefix = places[0].split(" ")[0] + "." if places else ""
    for name, prop in _properties(schema).items():
        cells = (
            f"`{prefix}{name}`",
            _type(prop),
            _default(prop, name in required),
            _bounds(prop),
            str(prop.get("description", "")),
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return [*lines, ""]


def field_reference_markdown() -> str:
    """docs/scenario-reference.md: the scenario file's models, then the suite file's."""
    lines = [_HEADER]
    for title, schema, root_name in (
        ("Scenario file", scenario_json_schema(), "Scenario"),
        ("Suite file", suite_json_schema(), "Suite"),
    ):
        lines += [f"## {title}", ""]
        for table in _tables(schema, root_name):
            lines += _table_markdown(table, "###")
    return "\n".join(lines).rstrip("\n") + "\n"
