"""The JSON documents of a run folder as typed models: one base for all, one reader, one writer.

Each document (``summary.json``, ``manifest.json``) is described by one pydantic model that the
writer fills and every reader gets back. A reader refuses, in one line naming the file and the
field, a file that is truncated, of another format or version, or that holds a value of the wrong
type; it never lets a traceback through.

Validation is strict (a number written as a string, or ``true`` where a count is expected, is
refused rather than converted) and open (fields a newer harness added within the same format
version are kept and written back untouched, after the known ones). Fields a file does not have
stay unset and are not written back, so a document read and written again keeps its bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from harness.errors import HarnessError
from harness.files import check_format, read_json, write_json_atomic

# 2: each metric's scope, the hosts table, thresholds not judged (with a reason)
FORMAT_VERSION = 2
# versions still read: what they lack is optional in the models
OLDER_FORMAT_VERSIONS = (1,)


class DocumentKind(NamedTuple):
    """A JSON document the harness writes: its file name and the format name inside it."""

    file: str
    format: str


MANIFEST = DocumentKind("manifest.json", "harness-run-manifest")
SUMMARY = DocumentKind("summary.json", "harness-run-summary")


class OpenRecord(BaseModel):
    """A part of a document: strict types, unknown fields kept (additive changes within a
    version), fields by their JSON names (``pass``) or their Python ones (``passed``)."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class RunDocument(OpenRecord):
    """A whole document: its format name and version come first in the file. The writer sets
    them from the document's kind (:func:`write_model`); a reader has checked them before the
    fields (:func:`read_model`)."""

    format: str = ""
    format_version: int = FORMAT_VERSION


Document = TypeVar("Document", bound=RunDocument)


def document_fields(document: RunDocument) -> dict[str, Any]:
    """The fields a document holds, as JSON values, in its order, without format and version:
    unset fields are left out, so that a file read and written again keeps its bytes."""
    return document.model_dump(
        mode="json", by_alias=True, exclude_unset=True, exclude={"format", "format_version"}
    )


def write_model(folder: Path, kind: DocumentKind, document: RunDocument) -> Path:
    """Write ``document`` as ``folder/<kind.file>`` (atomically, fsynced), format first."""
    path = folder / kind.file
    # a document read from an older file keeps its version: what it lacks is optional
    version = document.format_version
    if version not in OLDER_FORMAT_VERSIONS:
        version = FORMAT_VERSION
    header = {"format": kind.format, "format_version": version}
    write_json_atomic(path, {**header, **document_fields(document)})
    return path


def read_model(path: Path, kind: DocumentKind, model: type[Document]) -> Document:
    """The document in ``path``; a one-line HarnessError naming the file (and the field) when it
    is missing, unreadable, of another format or version, or holds a wrong value."""
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{path}: missing")
    check_format(path, document, kind.format, FORMAT_VERSION, OLDER_FORMAT_VERSIONS)
    return validate_model(path, document, model)


def validate_model(path: Path, document: dict[str, Any], model: type[Document]) -> Document:
    """``document`` as ``model``; a one-line HarnessError naming the file and the first field
    that is wrong (and how many more are)."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise HarnessError(validation_line(path, exc)) from None


def validation_line(path: Path, exc: ValidationError) -> str:
    """The one line for a result file that its model refuses: the file, where in it, what was
    expected and what was found, e.g. ``capacity.json: scenarios[0].probes[0].accelerators:
    expected a whole number, found 'four'`` (and how many more problems there are)."""
    errors = exc.errors(include_url=False)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {_problem(errors[0])}{more}"


_EXPECTED = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
}


def _problem(error: ErrorDetails) -> str:
    """``where: expected what, found value`` for one of pydantic's errors."""
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    where = where.removeprefix(".") or "(the document)"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    context = error.get("ctx") or {}
    if error["type"] in _EXPECTED:
        expected = _EXPECTED[error["type"]]
    elif error["type"] == "greater_than_equal":
        expected = f"{context.get('ge')} or more"
    elif error["type"] == "literal_error":
        expected = context.get("expected", "").replace("'", '"')
    else:
        expected = error["msg"].removeprefix("Value error, ").removeprefix("expected ")
    return f"{where}: expected {expected}, found {shown}"
