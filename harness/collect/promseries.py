"""Prometheus series, pure: selectors, the frame's column names, counters across resets.

A selector is ``name`` or ``name{label="value", label2=~"regex", label3!="x", label4!~"re"}``
(PromQL's instant-vector selector without ranges or offsets; a regex is anchored at both ends, as
in PromQL). A series lacking a label a selector names compares as the empty string, as in PromQL.
The collector's ``labels`` matchers are looser: a series that lacks the label is not filtered by
it (``device`` narrows the disk and network metrics, not ``node_cpu_seconds_total``).

A column of the collector's frame is the series written as the exposition format writes it,
``name{label="value",...}`` with the labels sorted: readable, and :func:`parse_column` turns it
back into the name and labels.

Kept apart from the collector (no numpy, no network) so that the scenario model can check
selectors when a scenario is validated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# node_exporter's figures the summary names server_* (see harness.collect.prometheus)
DEFAULT_METRICS = (
    "node_disk_read_bytes_total",
    "node_disk_reads_completed_total",
    "node_disk_io_time_seconds_total",
    'node_network_transmit_bytes_total{device!="lo"}',
    "node_cpu_seconds_total",
)
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
OPERATORS = ("=~", "!~", "!=", "=")  # longest first: "=~" before "="
_VALUE = r'"((?:[^"\\]|\\.)*)"'
_MATCHER = re.compile(rf"\s*({LABEL})\s*(=~|!~|!=|=)\s*{_VALUE}\s*(,|$)")
_SELECTOR = re.compile(rf"\s*({NAME})\s*(?:\{{(.*)\}})?\s*$", re.S)
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``label op "value"``."""

    label: str
    op: str  # "=", "!=", "=~", "!~"
    value: str

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown matcher operator {self.op!r}; use =, !=, =~ or !~")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as err:
                raise ValueError(f"bad regular expression {self.value!r}: {err}") from None

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    """A metric name and the matchers its series must meet."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return name == self.name and all(m.matches(labels.get(m.label, "")) for m in self.matchers)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(0)), text)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """``label="value", label2=~"re"`` (the inside of the braces) -> matchers."""
    matchers: list[Matcher] = []
    at = 0
    text = text.strip()
    while at < len(text):
        found = _MATCHER.match(text, at)
        if found is None:
            raise ValueError(f'expected label="value" at {text[at:][:40]!r}')
        label, op, value, comma = found.groups()
        matchers.append(Matcher(label, op, _unescape(value)))
        at = found.end()
        if comma == "," and at >= len(text):
            break  # a trailing comma is allowed, as in PromQL
    return tuple(matchers)


def parse_selector(text: str) -> Selector:
    """``name`` or ``name{label="value",...}`` -> Selector; ValueError saying what is wrong."""
    found = _SELECTOR.match(text)
    if found is None:
        raise ValueError(f'not a selector: {text!r} (expected name or name{{label="value"}})')
    name, inside = found.groups()
    try:
        matchers = parse_matchers(inside or "")
    except ValueError as err:
        raise ValueError(f"selector {text!r}: {err}") from None
    return Selector(name, matchers)


def label_matcher(label: str, value: str) -> Matcher:
    """A ``labels`` entry: ``vda`` is equality; a value starting with an operator (``=~vd.*``,
    ``!=lo``, ``!~loop.*``) uses it."""
    for op in OPERATORS[:3]:
        if value.startswith(op):
            return Matcher(label, op, value[len(op) :])
    return Matcher(label, "=", value)


def passes_labels(labels: Mapping[str, str], matchers: Sequence[Matcher]) -> bool:
    """The ``labels`` filter: a matcher whose label the series lacks does not apply."""
    return all(m.matches(labels[m.label]) for m in matchers if m.label in labels)


def column_name(name: str, labels: Mapping[str, str]) -> str:
    """The frame's column for one series: ``name{a="1",b="2"}`` (labels sorted), or ``name``."""
    if not labels:
        return name
    inside = ",".join(f'{key}="{_escape(labels[key])}"' for key in sorted(labels))
    return f"{name}{{{inside}}}"


def parse_column(column: str) -> tuple[str, dict[str, str]]:
    """The inverse of :func:`column_name`: (name, labels)."""
    selector = parse_selector(column)
    return selector.name, {m.label: m.value for m in selector.matchers}


def columns_of(columns: Iterable[str], name: str) -> list[str]:
    """The columns holding series of metric ``name``."""
    return [c for c in columns if c == name or c.startswith(name + "{")]


def unwrap_resets(values: Sequence[float]) -> list[float]:
    """A counter made monotonic across resets (a value below the one before: the counter
    restarted from 0, as PromQL's rate assumes), NaN (a failed scrape) kept as NaN."""
    out: list[float] = []
    offset = 0.0
    previous: float | None = None
    for value in values:
        if value != value:  # NaN: a scrape that failed or a series absent this time
            out.append(value)
            continue
        if previous is not None and value < previous:
            offset += previous
        previous = value
        out.append(value + offset)
    return out
