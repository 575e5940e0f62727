"""Run folders: layout, writing, and the one reader of them, with a format version in every file.

    results/<run-id>/
      manifest.json        the resolved scenario, hardware and software tables, command line
      summary.json         {"format", "format_version", "scenario", "complete", "metrics", ...}
      steps.parquet        one row per training step (rank, wait, compute, loss)
      samples.parquet      one row per sample (fetch latency, bytes requested)
      series_<name>.parquet  one per collector (io, cpu, gpu), time series
      thumbnails/*.png     held-out samples as pictures (harness.train.samples), listed in the
                           manifest's "thumbnails" (added at the end of a complete run)

Run ids start with the UTC start time, so that they sort by time, and end with random hex, so
that runs started in the same second never collide. JSON files carry ``format_version``; Parquet
files carry it in their schema metadata. Readers refuse other versions with a clear message, and
accept additive changes within a version: fields they do not know are kept and ignored.

Every command that reads runs (compare, report, selfcheck) reads them with :class:`RunFolder`.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from harness.env import hardware_identity
from harness.errors import HarnessError, one_line
from harness.files import check_format, read_json, write_json_atomic

FORMAT_VERSION = 1
PARQUET_KEY = b"harness_format_version"


class DocumentKind(NamedTuple):
    """A JSON document the harness writes: its file name and the format name inside it."""

    file: str
    format: str


MANIFEST = DocumentKind("manifest.json", "harness-run-manifest")
SUMMARY = DocumentKind("summary.json", "harness-run-summary")
# The tables a run writes, in the order a reader usually wants them.
TABLES = ("steps", "samples", "series_io", "series_cpu", "series_gpu")


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
    check_format(path, document, kind.format, FORMAT_VERSION)
    return document


def write_table(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    """A Parquet table with the format version in its schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"{name}.parquet"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), PARQUET_KEY: str(FORMAT_VERSION).encode()}
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table.replace_schema_metadata(metadata), tmp)
    tmp.replace(path)
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
    if found != str(FORMAT_VERSION):
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
    on first use. Readers look up the fields they know; newer fields of the same format version
    are kept in the documents untouched."""

    folder: Path
    manifest: dict[str, Any] | None
    summary: dict[str, Any] | None
    _tables: dict[str, pd.DataFrame | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def read(cls, folder: Path) -> RunFolder:
        """Read a run folder. HarnessError when it holds neither document, or when a document
        is unreadable or of another format version."""
        manifest = cls._optional(folder, MANIFEST)
        summary = cls._optional(folder, SUMMARY)
        if manifest is None and summary is None:
            raise HarnessError(f"{folder}: holds no run (no {MANIFEST.file} or {SUMMARY.file})")
        return cls(folder, manifest, summary)

    @classmethod
    def from_summary_file(cls, path: Path) -> RunFolder:
        """A run from its summary file, wherever it was copied; the manifest beside it counts
        only when it belongs to the same run."""
        summary = read_json(path)
        if summary is None:
            raise HarnessError(f"{path}: missing")
        check_format(path, summary, SUMMARY.format, FORMAT_VERSION)
        manifest = cls._optional(path.parent, MANIFEST)
        if manifest is not None and manifest.get("run_id") != summary.get("run_id"):
            manifest = None
        return cls(path.parent, manifest, summary)

    @staticmethod
    def _optional(folder: Path, kind: DocumentKind) -> dict[str, Any] | None:
        return read_document(folder, kind) if (folder / kind.file).exists() else None

    # --- the documents --------------------------------------------------------------------------

    @property
    def has_summary(self) -> bool:
        return self.summary is not None

    @property
    def run_id(self) -> str:
        return str(
            (self.summary or {}).get("run_id")
            or (self.manifest or {}).get("run_id")
            or self.folder.name
        )

    @property
    def settings(self) -> dict[str, Any] | None:
        """The resolved scenario the run ran, as its manifest recorded it."""
        return (self.manifest or {}).get("scenario")

    @property
    def scenario_name(self) -> str:
        return str(
            (self.summary or {}).get("scenario")
            or (self.settings or {}).get("name")
            or self.folder.name
        )

    @property
    def complete(self) -> bool:
        """Whether the run finished: its summary says so (a run without one did not)."""
        return (self.summary or {}).get("complete") is True

    @property
    def reason(self) -> str | None:
        """Why an incomplete run stopped, as its summary recorded it."""
        return (self.summary or {}).get("reason")

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The summary's metrics, ``{name: {"value", "unit", "direction"}}``; empty without a
        summary."""
        return dict((self.summary or {}).get("metrics") or {})

    @property
    def repeat_index(self) -> int:
        """Which repeat of ``--repeat N`` this run was (1-based); 0 when not recorded."""
        repeat = (self.manifest or {}).get("repeat") or {}
        index = repeat.get("index") if isinstance(repeat, dict) else None
        return index if isinstance(index, int) else 0

    @property
    def hardware(self) -> dict[str, object] | None:
        """The run's hardware identity (``harness.env.hardware_identity``); None when no
        manifest recorded it."""
        return hardware_identity(self.manifest) if self.manifest else None

    @property
    def thumbnails(self) -> dict[str, Any] | None:
        """The held-out samples the run kept as pictures (``harness.train.samples``): None when
        it kept none (an incomplete run, a run folder written before they were kept)."""
        entry = (self.manifest or {}).get("thumbnails")
        return entry if isinstance(entry, dict) else None

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
        write it. HarnessError when it is unreadable or of another format version."""
        if name not in self._tables:
            self._tables[name] = read_table(self.folder, name) if self.has_table(name) else None
        return self._tables[name]
