"""Run folders: layout, writing, and the one reader of them, with a format version in every file.

    results/<run-id>/
      manifest.json        the resolved scenario, hardware and software tables, command line
      summary.json         {"format", "format_version", "scenario", "complete", "metrics", ...}
      steps.parquet        one row per training step (rank, wait, compute, drawn compute, loss)
      samples.parquet      one row per sample (fetch latency, bytes requested)
      series_<name>.parquet  one per collector (io, cpu, gpu), time series
      thumbnails/*.png     held-out samples as pictures (harness.train.samples), listed in the
                           manifest's "thumbnails" (added at the end of a complete run)

Run ids start with the UTC start time, so that they sort by time, and end with random hex, so
that runs started in the same second never collide. JSON files carry ``format_version``; Parquet
files carry it in their schema metadata. Readers refuse other versions with a clear message, and
accept additive changes within a version: fields they do not know are kept and ignored.

Every command that reads runs (compare, report, selfcheck) reads them with :class:`RunFolder`;
``summary.json`` and ``manifest.json`` are typed models (``harness.results.summary_file``,
``harness.results.manifest_file``) with one reader each.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness import stream
from harness.env import hardware_identity
from harness.errors import HarnessError, one_line
from harness.files import atomic_write, check_format, read_json, write_json_atomic
from harness.results.document import (
    FORMAT_VERSION,
    MANIFEST,
    OLDER_FORMAT_VERSIONS,
    SUMMARY,
    DocumentKind,
)
from harness.results.manifest_file import (
    RepeatRecord,
    RunManifest,
    read_manifest,
    write_manifest_file,
)
from harness.results.summary_file import SummaryFile, read_summary, write_summary

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "SUMMARY",
    "DocumentKind",
    "RepeatRecord",
    "RunFolder",
    "RunManifest",
    "SummaryFile",
    "read_manifest",
    "read_summary",
    "write_manifest_file",
    "write_summary",
]

PARQUET_KEY = b"harness_format_version"
# The tables a run writes, in the order a reader usually wants them.
TABLES = ("steps", "samples", "series_io", "series_cpu", "series_gpu")
# Tables whose segments (harness.stream) hold the final columns: read from them in a killed run.
STREAMED_TABLES = ("steps", "samples")


def new_run_id(scenario_name: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", scenario_name).strip("-")[:48] or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(3)}"


def write_document(folder: Path, kind: DocumentKind, document: dict[str, Any]) -> Path:
    path = folder / kind.file
    write_json_atomic(path, {"format": kind.format, "format_version": FORMAT_VERSION, **document})
    return path


def update_document(folder: Path, kind: DocumentKind, fields: dict[str, Any]) -> Path:
    """Add ``fields`` to a document already written (additive: what readers know stays)."""
    return write_document(folder, kind, {**read_document(folder, kind), **fields})


def read_document(folder: Path, kind: DocumentKind) -> dict[str, Any]:
    """A run document; HarnessError when it is missing, unreadable or of another version."""
    path = folder / kind.file
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{folder}: holds no run ({kind.file} is missing)")
    check_format(path, document, kind.format, FORMAT_VERSION, OLDER_FORMAT_VERSIONS)
    return document


def write_table(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    """A Parquet table with the format version in its schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"{name}.parquet"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), PARQUET_KEY: str(FORMAT_VERSION).encode()}
    with atomic_write(path) as handle:  # a full disk: one line naming the file, no partial file
        pq.write_table(table.replace_schema_metadata(metadata), handle)
    return path


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A run's Parquet table; HarnessError when it is missing, unreadable or of another
    version."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"{name}.parquet"
    if not path.exists():
        raise HarnessError(f"{path}: missing")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:  # truncated or not Parquet at all
        raise HarnessError(f"{path}: cannot read: {one_line(exc)}") from None
    found = (table.schema.metadata or {}).get(PARQUET_KEY, b"?").decode()
    if found not in {str(v) for v in (FORMAT_VERSION, *OLDER_FORMAT_VERSIONS)}:
        raise HarnessError(
            f"{path}: format version {found}, this harness reads version {FORMAT_VERSION}"
        )
    return table.to_pandas()


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders among ``paths``: each path is a run folder or a folder of run folders."""
    runs: list[Path] = []
    for path in paths:
        if (path / SUMMARY.file).exists() or (path / MANIFEST.file).exists():
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.glob(f"*/{MANIFEST.file}")) if path.is_dir() else []
        if not found:
            raise HarnessError(f"{path}: holds no run (no {MANIFEST.file} in it or its folders)")
        runs.extend(found)
    return runs


@dataclass
class RunFolder:
    """One run as ``harness run`` wrote it: both documents read (None where the file is not
    there: a run killed before its summary, a summary copied without its manifest), tables read
    on first use. Newer fields of the same format version are kept in the models untouched."""

    folder: Path
    manifest: RunManifest | None
    summary: SummaryFile | None
    _tables: dict[str, pd.DataFrame | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def read(cls, folder: Path) -> RunFolder:
        """Read a run folder. HarnessError when it holds neither document, or when a document
        is unreadable, malformed or of another format version."""
        manifest = cls._manifest(folder)
        summary = read_summary(folder / SUMMARY.file) if (folder / SUMMARY.file).exists() else None
        if manifest is None and summary is None:
            raise HarnessError(f"{folder}: holds no run (no {MANIFEST.file} or {SUMMARY.file})")
        return cls(folder, manifest, summary)

    @classmethod
    def from_summary_file(cls, path: Path) -> RunFolder:
        """A run from its summary file, wherever it was copied; the manifest beside it counts
        only when it belongs to the same run."""
        summary = read_summary(path)
        manifest = cls._manifest(path.parent)
        if manifest is not None and manifest.run_id != summary.run_id:
            manifest = None
        return cls(path.parent, manifest, summary)

    @staticmethod
    def _manifest(folder: Path) -> RunManifest | None:
        path = folder / MANIFEST.file
        return read_manifest(path) if path.exists() else None

    # --- the documents --------------------------------------------------------------------------

    @property
    def has_summary(self) -> bool:
        return self.summary is not None

    @property
    def run_id(self) -> str:
        if self.summary is not None and self.summary.run_id:
            return self.summary.run_id
        if self.manifest is not None and self.manifest.run_id:
            return self.manifest.run_id
        return self.folder.name

    @property
    def settings(self) -> dict[str, Any] | None:
        """The resolved scenario the run ran, as its manifest recorded it."""
        return None if self.manifest is None else self.manifest.scenario

    @property
    def scenario_name(self) -> str:
        if self.summary is not None and self.summary.scenario:
            return self.summary.scenario
        return str((self.settings or {}).get("name") or self.folder.name)

    @property
    def complete(self) -> bool:
        """Whether the run finished: its summary says so (a run without one did not)."""
        return self.summary is not None and self.summary.complete

    @property
    def reason(self) -> str | None:
        """Why an incomplete run stopped, as its summary recorded it."""
        return None if self.summary is None else self.summary.reason

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The summary's metrics, ``{name: {"value", "unit", "direction"}}`` (the shape
        ``harness.stats`` and the report's recomputed metrics share); empty without a
        summary."""
        return {} if self.summary is None else self.summary.metric_table()

    @property
    def repeat_index(self) -> int:
        """Which repeat of ``--repeat N`` this run was (1-based); 0 when not recorded."""
        repeat = None if self.manifest is None else self.manifest.repeat
        return 0 if repeat is None else repeat.index

    @property
    def hardware(self) -> dict[str, object] | None:
        """The run's hardware identity (``harness.env.hardware_identity``); None when no
        manifest recorded it."""
        if self.manifest is None:
            return None
        return hardware_identity({"hardware": self.manifest.hardware or {}})

    @property
    def hardware_table(self) -> dict[str, Any]:
        """The hardware the manifest recorded, every field (``harness.env``); empty without
        one."""
        return {} if self.manifest is None else dict(self.manifest.hardware or {})

    @property
    def started(self) -> str | None:
        """When the run started (its manifest's local time, ISO 8601)."""
        return None if self.manifest is None else self.manifest.started

    @property
    def finished(self) -> str | None:
        """When the run finished (its summary's local time, ISO 8601)."""
        return None if self.summary is None else self.summary.finished

    @property
    def thumbnails(self) -> dict[str, Any] | None:
        """The held-out samples the run kept as pictures (``harness.train.samples``): None when
        it kept none (an incomplete run, a run folder written before they were kept)."""
        return None if self.manifest is None else self.manifest.thumbnails

    def picture(self, name: str) -> Path | None:
        """A file the thumbnails entry names, inside the run folder; None when it is absent or
        the name points elsewhere."""
        path = self.folder / name
        inside = path.resolve().is_relative_to(self.folder.resolve())
        return path if inside and path.is_file() else None

    # --- the tables -----------------------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        return (self.folder / f"{name}.parquet").exists()

    def table(self, name: str) -> pd.DataFrame | None:
        """Table ``name`` (``steps``, ``series_gpu``...), read once; None when the run did not
        write it. HarnessError when it is unreadable or of another format version. A run killed
        before it wrote its tables has its steps and samples read from the segments it
        streamed (``harness.stream``)."""
        if name not in self._tables:
            if self.has_table(name):
                self._tables[name] = read_table(self.folder, name)
            else:
                self._tables[name] = self._streamed(name)
        return self._tables[name]

    def _streamed(self, name: str) -> pd.DataFrame | None:
        if name not in STREAMED_TABLES or not stream.segments(self.folder, name):
            return None
        import pyarrow as pa

        try:
            return stream.read_run_table(self.folder, name)
        except (OSError, pa.ArrowException) as exc:
            raise HarnessError(
                f"{self.folder / stream.FOLDER}: cannot read {name}: {one_line(exc)}"
            ) from None
