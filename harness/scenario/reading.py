"""Reading scenario YAML safely: duplicate keys refused, positions kept, hostile shapes bounded.

PyYAML's loaders keep the last of two equal keys without a word, and build aliased content as
shared references that later walks (validation, copies) expand: a few lines of nested aliases (the
"billion laughs" shape) then take minutes. So the document is built here from libyaml's event
stream, in one pass that

* refuses a key given twice in one mapping, naming both lines;
* records where every value and key sits (``file:line:col`` for validation messages);
* counts values as an alias would expand them, and stops at ``MAX_VALUES``;
* stops at ``MAX_EVENTS`` events and ``MAX_DEPTH`` levels of nesting, and at files over
  ``MAX_FILE_BYTES``, so that any input is answered in well under a second.

Scalars are resolved and constructed by PyYAML's safe resolver and constructor (YAML 1.1 types:
``8``, ``true``, ``null``, ``1e-3``...), exactly as ``yaml.safe_load`` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from harness.errors import ScenarioError, one_line

# A scenario is a few kB with about a hundred values; these bounds are two orders of magnitude
# above any real file and keep the worst input to a fraction of a second.
MAX_FILE_BYTES = 1_000_000
MAX_EVENTS = 10_000
MAX_VALUES = 5_000  # counting an alias's values each time it is used
MAX_DEPTH = 32

Path_ = tuple[Any, ...]  # a value's place in the document: keys and list indices

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


class Document(dict[str, Any]):
    """A YAML mapping as a dict, with the position of each value (``marks``) and of each key
    (``key_marks``) by its path, as ``(line, column)`` counted from 1."""

    marks: dict[Path_, tuple[int, int]]
    key_marks: dict[Path_, tuple[int, int]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks, self.key_marks = {}, {}
        self.overridden: set[Path_] = set()  # paths set on the command line (-o), not in the file

    def position(self, path: Path_, *, key: bool = False) -> tuple[int, int] | None:
        """Where ``path`` is written (its key's position with ``key``), or the nearest enclosing
        value's position; None for the document itself (a whole-file problem) and for what an
        override set."""
        if any(path[: len(done)] == done for done in self.overridden):
            return None
        if key and path in self.key_marks:
            return self.key_marks[path]
        for end in range(len(path), 0, -1):
            found = self.marks.get(tuple(path[:end]))
            if found is not None:
                return found
        return None


class _TooLarge(Exception):
    pass


@dataclass
class _Builder:
    file: Path
    loader: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    anchors: dict[str, tuple[Any, int]] = field(default_factory=dict)
    events: int = 0
    values: int = 0

    def fail(self, mark: Any, message: str) -> ScenarioError:
        return ScenarioError([f"{self.file}:{mark.line + 1}:{mark.column + 1}: {message}"])

    def next(self) -> Any:
        self.events += 1
        if self.events > MAX_EVENTS:
            raise _TooLarge(
                f"more than {MAX_EVENTS} YAML events; a scenario has a few hundred at most"
            )
        return self.loader.get_event()

    def count(self, size: int, mark: Any) -> None:
        self.values += size
        if self.values > MAX_VALUES:
            raise self.fail(
                mark,
                f"holds more than {MAX_VALUES} values (an alias counts the values it repeats); "
                "a scenario has a few hundred at most",
            )

    def node(self, path: Path_, depth: int) -> tuple[Any, int]:
        """The value whose first event comes next, and its size as aliases expand it."""
        event = self.next()
        if isinstance(event, AliasEvent):
            if event.anchor not in self.anchors:
                raise self.fail(event.start_mark, f"alias *{event.anchor} names no finished anchor")
            value, size = self.anchors[event.anchor]
            self.count(size, event.start_mark)
            self.marks.setdefault(path, _position(event.start_mark))
            return value, size
        if depth > MAX_DEPTH:
            raise self.fail(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self.marks[path] = _position(event.start_mark)
        self.count(1, event.start_mark)
        if isinstance(event, ScalarEvent):
            value, size = self.scalar(event, path), 1
        elif isinstance(event, SequenceStartEvent):
            self.plain_collection(event, "tag:yaml.org,2002:seq")
            value, size = self.sequence(path, depth)
        elif isinstance(event, MappingStartEvent):
            self.plain_collection(event, "tag:yaml.org,2002:map")
            value, size = self.mapping(path, depth, event)
        else:  # the parser never gives another event here
            raise self.fail(event.start_mark, f"unexpected {type(event).__name__}")
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, size)
        return value, size

    def plain_collection(self, event: Any, tag: str) -> None:
        if event.tag not in (None, "!", tag):
            raise self.fail(event.start_mark, f"tag {event.tag} is not supported here")

    def scalar(self, event: ScalarEvent, path: Path_) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag not in self.loader.yaml_constructors:
            raise self.fail(event.start_mark, f"tag {tag} is not supported here")
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            value = self.loader.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or one_line(exc)
            raise self.fail(event.start_mark, one_line(problem, 200)) from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            reason = one_line(exc).split(";")[0]
            raise self.fail(
                event.start_mark, f"cannot read value: {one_line(reason, 120)}"
            ) from None
        if event.implicit[0] and tag in (INT_TAG, FLOAT_TAG):
            problem = yaml11_number_problem(event.value, value)
            if problem is not None:
                where = f"{dotted(path)}: " if path else ""
                raise self.fail(event.start_mark, where + problem)
        return value

    def sequence(self, path: Path_, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        size = 1
        while not self.loader.check_event(SequenceEndEvent):
            value, item_size = self.node((*path, len(items)), depth + 1)
            items.append(value)
            size += item_size
        self.next()
        return items, size

    def mapping(self, path: Path_, depth: int, start: Any) -> tuple[dict[Any, Any], int]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}  # from ``<<`` merge keys: explicit keys take precedence
        seen: dict[Any, Any] = {}  # key -> its mark
        size = 1
        while not self.loader.check_event(MappingEndEvent):
            key_event = self.loader.peek_event()
            is_merge = (
                isinstance(key_event, ScalarEvent)
                and key_event.value == "<<"
                and key_event.tag is None
                and key_event.implicit[0]  # plain, not quoted
            )
            if is_merge:
                self.next()
                value, value_size = self.node((*path, "<<"), depth + 1)
                self.merge(merged, value, key_event)
                size += value_size
                continue
            key, _ = self.node((*path, "<key>"), depth + 1)
            self.marks.pop((*path, "<key>"), None)
            if isinstance(key, (dict, list)):
                raise self.fail(
                    key_event.start_mark, "a key must be a plain value, not a collection"
                )
            if key in seen:
                first = seen[key]
                raise self.fail(
                    key_event.start_mark,
                    f"duplicate key {key!r} (first at line {first.line + 1}, column "
                    f"{first.column + 1}); YAML keeps only one of them",
                )
            seen[key] = key_event.start_mark
            value, value_size = self.node((*path, key), depth + 1)
            size += value_size
            self.key_marks[(*path, key)] = _position(key_event.start_mark)
            result[key] = value
        self.next()
        return {**merged, **result}, size

    def merge(self, merged: dict[Any, Any], value: Any, mark_event: Any) -> None:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            raise self.fail(
                mark_event.start_mark, "a << merge key takes a mapping or a list of them"
            )
        for source in reversed(sources):  # earlier mappings in the list win
            merged.update(source)


INT_TAG, FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]")  # 010: octal 8 in YAML 1.1, 10 in YAML 1.2
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")  # 1:20 = 80


def yaml11_number_problem(text: str, value: Any) -> str | None:
    """Why the plain scalar ``text``, which YAML 1.1 reads as the number ``value``, is refused:
    a leading zero (octal: ``010`` is 8) or colons (base 60: ``1:20`` is 80) give a number that
    YAML 1.2, JSON and people read otherwise; None for an ordinary number."""
    if _LEADING_ZERO.match(text):
        reading = f"as octal ({value})" if isinstance(value, int) else f"as {value} but 010 as 8"
        return (
            f"{text} has a leading zero, which YAML 1.1 reads {reading}: write the number "
            "without it (or quote it for a string)"
        )
    if _SEXAGESIMAL.fullmatch(text):
        return (
            f"{text} reads as base 60 in YAML 1.1 ({value}): write the number itself (or quote "
            "it for a string)"
        )
    return None


def dotted(path: Path_) -> str:
    """A value's place as the field names messages use: ``training.steps``, ``tags[0]``."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.removeprefix(".")


def _position(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def parse_yaml(text: str, file: Path) -> Any:
    """The one document in ``text``: a ``Document`` when it is a mapping, else the plain value
    (None when empty). Any problem is a one-line ``ScenarioError`` with its position."""
    loader = _Loader(text)
    builder = _Builder(file, loader)
    try:
        if not isinstance(builder.next(), StreamStartEvent):
            raise ScenarioError([f"{file}: not a YAML stream"])
        if loader.check_event(StreamEndEvent):
            return None
        builder.next()  # DocumentStartEvent
        value, _size = builder.node((), 0)
        builder.next()  # DocumentEndEvent
        if not loader.check_event(StreamEndEvent):
            extra = loader.peek_event()
            if isinstance(extra, DocumentStartEvent):
                raise builder.fail(
                    extra.start_mark, "a second YAML document (---): a scenario file holds one"
                )
    except _TooLarge as exc:
        raise ScenarioError([f"{file}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        position = getattr(exc, "position", None)  # a reader error: a character it refuses
        if mark is None and isinstance(position, int):
            line = text.count("\n", 0, position)
            where = f":{line + 1}:{position - (text.rfind(chr(10), 0, position) + 1) + 1}"
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
        raise ScenarioError(
            [f"{file}{where}: YAML syntax error: {one_line(problem, 200)}"]
        ) from None
    finally:
        loader.dispose()
    if isinstance(value, dict):
        document = Document(value)
        document.marks, document.key_marks = builder.marks, builder.key_marks
        return document
    return value


def read_yaml(path: Path) -> Document:
    """Read a scenario, suite or plan file: a YAML mapping; any problem becomes a one-line
    ScenarioError naming the file (and the line, where there is one)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ScenarioError([f"{path}: is a directory, expected a YAML file"]) from None
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {one_line(exc)}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(
            [f"{path}: larger than {MAX_FILE_BYTES} bytes; a scenario file is a few kB"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{path}: not UTF-8 text: {one_line(exc)}"]) from None
    data = parse_yaml(text, path)
    if not isinstance(data, Document):  # parse_yaml returns every mapping as a Document
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ScenarioError([f"{path}: expected a mapping of fields, got {got}"])
    return data
