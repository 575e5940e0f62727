"""User strings made safe for each output: the characters that act rather than show, escaped.

A scenario name, a file name or a field of a hand-edited summary.json reaches terminals, CI logs
(where a line starting ``::error`` is a GitHub workflow command), HTML and XML. Control characters
(C0, DEL, C1: newlines, ESC sequences, BEL, NUL), bidirectional overrides and isolates (U+202E
shows text reversed), line and paragraph separators, lone surrogates and the two non-characters
XML forbids are shown instead as escapes (``\\x1b``, ``\\u202e``), so that what a user wrote is
visible and can do nothing. JSON needs nothing: ``json.dumps`` escapes them itself.

Scenario and suite names refuse these characters outright (:func:`unsafe_character`, used by
``harness.scenario``); every other string is escaped where it is written: :func:`visible` for the
terminal, CI logs and the step summary's Markdown (one line each), :func:`xml_text` for XML text
and HTML (where tab and line breaks are whitespace).
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # marks, embeddings, overrides, isolates
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff\ufffe\uffff]")
_XML_KEPT = "\t\n\r"  # the control characters XML 1.0 allows (line breaks in a message)


def escape(char: str) -> str:
    """One character as the escape shown in its place: ``\\x1b``, ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every character that acts rather than shows (controls, newlines included,
    bidirectional overrides, separators, surrogates) as its escape: one line of a terminal, a CI
    log or a Markdown table."""
    return _UNSAFE.sub(lambda match: escape(match.group()), text)


def xml_text(text: str) -> str:
    """``text`` for XML or HTML: the characters XML 1.0 forbids (and the other unsafe ones) as
    escapes, tab and line breaks kept; ``<`` and ``&`` are the writer's or template's job."""
    return _UNSAFE.sub(
        lambda match: match.group() if match.group() in _XML_KEPT else escape(match.group()), text
    )


def unsafe_character(text: str) -> str | None:
    """Where ``text`` holds its first unsafe character: ``U+000A at character 3``; None when it
    holds none."""
    match = _UNSAFE.search(text)
    if match is None:
        return None
    return f"U+{ord(match.group()):04X} at character {match.start() + 1}"
