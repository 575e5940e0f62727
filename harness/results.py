"""Run folders: layout, writing and reading, with a format version in every file.

    results/<run-id>/
      manifest.json        the resolved scenario, hardware and software tables, command line
      summary.json         {"format", "format_version", "scenario", "complete", "metrics", ...}
      steps.parquet        one row per training step (rank, wait, compute, loss)
      samples.parquet      one row per sample (fetch latency, bytes requested)
      series_<name>.parquet  one per collector (io, cpu, gpu), time series

Run ids start with the UTC start time, so that they sort by time, and end with random hex, so
that runs started in the same second never collide. JSON files carry ``format_version``; Parquet
files carry it in their schema metadata. Readers refuse other versions with a clear message.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import pandas as pd

from harness.data.files import read_json, write_json_atomic
from harness.data.manifest import check_format
from harness.errors import HarnessError

FORMAT_VERSION = 1
MANIFEST = ("manifest.json", "harness-run-manifest")
SUMMARY = ("summary.json", "harness-run-summary")
PARQUET_KEY = b"harness_format_version"


def new_run_id(scenario_name: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", scenario_name).strip("-")[:48] or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(3)}"


def write_document(folder: Path, kind: tuple[str, str], document: dict[str, Any]) -> Path:
    name, format_name = kind
    path = folder / name
    write_json_atomic(path, {"format": format_name, "format_version": FORMAT_VERSION, **document})
    return path


def read_document(folder: Path, kind: tuple[str, str]) -> dict[str, Any]:
    name, format_name = kind
    path = folder / name
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{folder}: holds no run ({name} is missing)")
    check_format(path, document, format_name, FORMAT_VERSION)
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
    import pyarrow.parquet as pq

    path = folder / f"{name}.parquet"
    if not path.exists():
        raise HarnessError(f"{path}: missing")
    table = pq.read_table(path)
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
        if (path / SUMMARY[0]).exists() or (path / MANIFEST[0]).exists():
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.glob(f"*/{MANIFEST[0]}")) if path.is_dir() else []
        if not found:
            raise HarnessError(f"{path}: holds no run (no {MANIFEST[0]} in it or its folders)")
        runs.extend(found)
    return runs
