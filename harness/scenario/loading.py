"""Loading scenario and suite files: YAML read safely, ``-o`` overrides applied, the model
validated, and every problem one line ``FILE:LINE:COL: field.path: what is expected (got VALUE)``.

Loading never raises anything but ``ScenarioError``. Relative dataset and cache paths are resolved
against the current working directory: they name the storage under test, which belongs to the
machine, not to the scenario file.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import ScenarioError, one_line
from harness.scenario.model import (
    ImageCollageDataset,
    LoadedScenario,
    RecordsDataset,
    Scenario,
    Suite,
    VideoDataset,
)
from harness.scenario.reading import Document, parse_yaml, read_yaml

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_PROBLEMS = 20  # per file: a file of thousands of bad entries still answers in a screen


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value``; the value is YAML (``8``, ``true``, ``[1, 2]``, ``null``)."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ScenarioError([f"-o {text}: expected key.path=value, e.g. -o pipeline.workers=4"])
    if not raw.strip():
        return parts, ""
    try:  # the scenario files' reader: the same bounds, and YAML 1.1's 010 and 1:20 refused
        value = parse_yaml(raw, Path("-o"))
    except ScenarioError as exc:
        problems = [problem.split(": ", 1)[-1] for problem in exc.problems]
        raise ScenarioError([f"-o {text}: {problem}" for problem in problems]) from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` set (sections created as needed).

    Positions of the file's values are kept, except under an overridden key: its value now comes
    from the command line."""
    result = Document(copy.deepcopy(dict(data)))
    if isinstance(data, Document):
        result.marks, result.key_marks = data.marks, data.key_marks
        result.overridden = set(data.overridden)
    for text in overrides:
        parts, value = parse_override(text)
        node: dict[str, Any] = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ScenarioError([f"-o {text}: {where} is a value, not a section"])
            node = child
        node[parts[-1]] = value
        result.overridden.add(tuple(parts))
    return result


def validate_model(file: Path, data: dict[str, Any], model: type[ModelT]) -> ModelT:
    """``data``, read from ``file``, as ``model``: problems become a ScenarioError naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_errors(file, exc, model, data)) from None


def load_scenario(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> LoadedScenario:
    """Load and validate one scenario file, with ``-o`` overrides applied before validation."""
    file = Path(path)
    data = apply_overrides(read_yaml(file), overrides)
    if "scenarios" in data:
        raise ScenarioError([f"{file}: is a suite file; this command takes a scenario file"])
    scenario = validate_model(file, data, Scenario)
    return LoadedScenario(file=file, scenario=_resolve_paths(scenario))


def is_suite(path: str | os.PathLike[str]) -> bool:
    """A suite is a YAML mapping with a ``scenarios`` list."""
    return "scenarios" in read_yaml(Path(path))


def load_suite(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[Suite, list[LoadedScenario]]:
    """Load a suite and every scenario it lists (paths relative to the suite file).

    Every problem in every file is collected before raising, so one run of ``validate`` shows all.
    """
    file = Path(path)
    suite = validate_model(file, read_yaml(file), Suite)
    problems: list[str] = []
    loaded: list[LoadedScenario] = []
    for entry in suite.scenarios:
        try:
            loaded.append(load_scenario(file.parent / entry, overrides))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    names = [item.scenario.name for item in loaded]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{file}: scenarios: two scenarios are named {name!r}; names must differ")
    problems.extend(_shared_dataset_conflicts(file, loaded))
    if problems:
        raise ScenarioError(problems)
    return suite, loaded


def load_scenarios(
    paths: Iterable[str | os.PathLike[str]], overrides: Sequence[str] = ()
) -> list[LoadedScenario]:
    """Load scenario and suite files alike, collecting every problem of every file."""
    problems: list[str] = []
    loaded: list[LoadedScenario] = []
    for path in paths:
        try:
            if is_suite(path):
                loaded.extend(load_suite(path, overrides)[1])
            else:
                loaded.append(load_scenario(path, overrides))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return loaded


def scenario_to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario (defaults filled in), as YAML."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False, width=100)


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file, for editors (``harness validate --schema``); a suite
    file's is under ``$defs/Suite`` (with its capacity settings, ``$defs/CapacitySettings``)."""
    schema = Scenario.model_json_schema()
    suite = Suite.model_json_schema()
    schema.setdefault("$defs", {}).update(suite.pop("$defs", {}))
    schema["$defs"]["Suite"] = suite
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "harness scenario"
    return schema


def suite_json_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file (for the field reference, docs/scenario-reference.md)."""
    schema = Suite.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "harness suite"
    return schema


# --- helpers ------------------------------------------------------------------------------------


def _resolve_paths(scenario: Scenario) -> Scenario:
    dataset = scenario.dataset.model_copy(update={"path": _absolute(scenario.dataset.path)})
    pipeline = scenario.pipeline
    if pipeline.cache is not None:
        cache = pipeline.cache.model_copy(update={"path": _absolute(pipeline.cache.path)})
        pipeline = pipeline.model_copy(update={"cache": cache})
    return scenario.model_copy(update={"dataset": dataset, "pipeline": pipeline})


def _absolute(path: str) -> str:
    return str(Path(os.path.expanduser(path)).absolute())


def _shared_dataset_conflicts(file: Path, loaded: list[LoadedScenario]) -> list[str]:
    """Scenarios of one suite that put different datasets at the same path would overwrite each
    other; the same dataset shared by several scenarios (decoded and cached video) is fine."""
    seen: dict[str, LoadedScenario] = {}
    problems = []
    for item in loaded:
        dataset = item.scenario.dataset
        first = seen.setdefault(dataset.path, item)
        if first is not item and first.scenario.dataset != dataset:
            problems.append(
                f"{file}: scenarios {first.scenario.name!r} and {item.scenario.name!r} describe "
                f"different datasets at the same dataset.path {dataset.path}"
            )
    return problems


_DATASET_KINDS: dict[str, type[BaseModel]] = {
    "image_collage": ImageCollageDataset,
    "video": VideoDataset,
    "records": RecordsDataset,
}
_LEADING_FIELD = re.compile(r"([a-z_]+(?:\.[a-z_]+)+)")


def _format_errors(
    file: Path, exc: ValidationError, model: type[BaseModel], data: dict[str, Any]
) -> list[str]:
    lines = []
    errors = exc.errors()
    for error in errors[:MAX_PROBLEMS]:
        # Discriminated unions add the tag ("video") to the location: users never wrote it.
        path = tuple(p for i, p in enumerate(error["loc"]) if not (i == 1 and p in _DATASET_KINDS))
        field = ".".join(str(p) for p in path)
        kind = error["type"]
        if kind == "extra_forbidden":
            hint = _suggest(model, [str(p) for p in error["loc"]])
            lines.append(f"{_where(file, data, path, key=True)}{field}: unknown field{hint}")
            continue
        if kind == "missing":
            lines.append(f"{_where(file, data, path[:-1])}{field}: required field is missing")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if not path:  # a whole-scenario check: its message starts with the field it is about
            named = _LEADING_FIELD.match(message)
            path = tuple(named.group(1).split(".")) if named else ()
            field = ""
        got = error.get("input")
        shown = (
            ""
            if isinstance(got, (dict, list)) or kind == "value_error"
            else f" (got {one_line(repr(got), 80)})"
        )
        where = f"{field}: " if field else ""
        lines.append(f"{_where(file, data, path)}{where}{_lower_first(message)}{shown}")
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"{file}: ... and {len(errors) - MAX_PROBLEMS} more problems")
    return lines


def _where(file: Path, data: dict[str, Any], path: tuple[Any, ...], *, key: bool = False) -> str:
    """``FILE:LINE:COL: `` where the YAML has a position for ``path``, else ``FILE: ``."""
    position = data.position(path, key=key) if isinstance(data, Document) and path else None
    return f"{file}:{position[0]}:{position[1]}: " if position else f"{file}: "


def _suggest(model: type[BaseModel], loc: list[str]) -> str:
    """' (did you mean workers?)' for a misspelt key, found among the siblings it sits beside.

    ``loc`` is pydantic's location, with the dataset kind's tag still in it."""
    fields = _fields_at(model, loc[:-1])
    close = difflib.get_close_matches(loc[-1], fields, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (expected one of: {', '.join(fields)})"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        if part in _DATASET_KINDS:
            current = _DATASET_KINDS[part]
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
