"""``manifest.json``: what a run ran and where, written before its first step; one model for the
writer (``harness run``'s ``write_manifest``) and every reader.

The manifest is written first, so a run folder with a manifest and no ``summary.json`` is a run
that was killed before it finished (``RunFolder.has_summary``); ``thumbnails`` is added at the
end of a complete run only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.results.document import (
    MANIFEST,
    OpenRecord,
    RunDocument,
    read_model,
    write_model,
)


class RepeatRecord(OpenRecord):
    """Which repeat of ``harness run --repeat N`` a run was."""

    index: int  # 1-based
    of: int


class RunManifest(RunDocument):
    """``manifest.json`` (see README "Runs"). Open records that another module owns keep their
    JSON shape: ``scenario`` (the resolved scenario, ``harness.scenario``), ``emulation``
    (``harness.train.profiles``), ``hardware`` and ``software`` (``harness.env``) and
    ``thumbnails`` (``harness.train.samples``)."""

    run_id: str
    scenario: dict[str, Any]  # the resolved scenario, as JSON
    scenario_file: str | None = None
    command: list[str] = Field(default_factory=list)
    started: str | None = None  # local time, ISO 8601
    ranks: int | None = None
    device: str | None = None  # the torch device, "cuda:0"
    precision: str | None = None
    cpu_threads: int | None = None
    repeat: RepeatRecord | None = None  # None: not one of several repeats
    emulation: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    software: dict[str, Any] | None = None
    thumbnails: dict[str, Any] | None = None  # added at the end of a complete run

    def environment(self, table: Literal["hardware", "software"]) -> dict[str, Any] | None:
        """The hardware or software table, as ``harness.env`` recorded it."""
        return self.hardware if table == "hardware" else self.software


def read_manifest(path: Path) -> RunManifest:
    """A ``manifest.json``; a one-line HarnessError naming the file and the field otherwise."""
    return read_model(path, MANIFEST, RunManifest)


def write_manifest_file(folder: Path, manifest: RunManifest) -> Path:
    return write_model(folder, MANIFEST, manifest)
