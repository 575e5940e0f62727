"""The ground floor for files: atomic writes, writable folders, clear disk errors, format checks.

Every file the harness writes appears under its final name only once it is complete (written to a
temporary name beside it, then renamed), so a killed or failed run never leaves a file that looks
finished. Temporary names start with ``.`` and contain ``.tmp-`` so that a resume can sweep them.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, NamedTuple

from harness.errors import HarnessError, one_line

TMP_MARK = ".tmp-"


@contextmanager
def atomic_write(path: Path, *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block ends cleanly.

    ``fsync`` makes the content durable before the rename (manifests); bulk data skips it and the
    caller syncs once at the end instead, which costs far less on many small files.
    """
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise disk_error(exc, path) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Manifests are small and are what marks work as done, so they are always fsynced."""
    text = json.dumps(document, indent=1, sort_keys=False) + "\n"
    with atomic_write(path, fsync=True) as handle:
        handle.write(text.encode())


STDOUT = "-"  # as a file name: standard output (``--json -``)


def write_json_output(target: str | Path, document: Mapping[str, Any], *, indent: int = 1) -> None:
    """A command's JSON output (``--json FILE|-``): to stdout for ``-``, else to the file
    ``target``, written atomically (complete under its name, or not there at all)."""
    text = json.dumps(document, indent=indent) + "\n"
    if str(target) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_write(Path(target)) as handle:
        handle.write(text.encode())


MiB = 2**20


class JsonKind(NamedTuple):
    """What a JSON file holds and the most bytes such a file can sensibly have: a file over it
    (damaged, foreign, or a sparse file of a terabyte) is refused by its size, before reading,
    since parsing JSON takes about twice its size in memory."""

    what: str
    max_bytes: int


RESULT_JSON = JsonKind("a results document", 64 * MiB)  # summary, manifest, baseline, capacity
DATASET_JSON = JsonKind("a dataset index or manifest", 1024 * MiB)  # a file per sample or frame


def read_json(path: Path, kind: JsonKind = RESULT_JSON) -> dict[str, Any] | None:
    """A JSON document, or None when the file does not exist; a one-line HarnessError when it
    cannot be read, is not a JSON object, or is larger than ``kind`` allows."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > kind.max_bytes:
                raise HarnessError(
                    f"{path}: {size / MiB:,.0f} MiB, more than {kind.what} can be "
                    f"({kind.max_bytes / MiB:,.0f} MiB): not read"
                )
            document = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot read: {one_line(exc)}") from None
    if not isinstance(document, dict):
        raise HarnessError(f"{path}: expected a JSON object")
    return document


def disk_error(exc: OSError, path: Path) -> HarnessError:
    """One line that names the file and says what went wrong on the disk."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HarnessError(f"disk full while writing {path}: free space or choose another path")
    reason = exc.strerror or str(exc)
    return HarnessError(f"cannot write {path}: {reason}")


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` if needed and prove that a file can be written in it, before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise HarnessError(f"cannot write in {path}: {reason}") from None


def sweep_temporaries(folder: Path) -> int:
    """Remove temporary files a killed writer left behind (recursively); return how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and TMP_MARK in name:
                _remove_quietly(Path(root) / name)
                removed += 1
    return removed


def sync_filesystem(path: Path) -> None:
    """Flush written data of the filesystem holding ``path`` to the device, so that reported
    write throughput is the disk's, not the page cache's. Uses Linux syncfs(2), which flushes
    that filesystem only; falls back to sync(2) elsewhere."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError):
        os.sync()
        return
    try:
        if libc.syncfs(fd) != 0:
            os.sync()
    except AttributeError:
        os.sync()
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with suppress(OSError):
        os.unlink(path)


def check_format(path: Path, document: dict[str, Any], name: str, version: int) -> None:
    """Refuse, in one line, a file of another kind or of a format version not readable here."""
    if document.get("format") != name:
        raise HarnessError(f"{path}: not a {name} file (format {document.get('format')!r})")
    found = document.get("format_version")
    if found != version:
        advice = (
            "regenerate it with this harness (--force)"
            if isinstance(found, int) and found < version
            else "upgrade the harness to read it"
        )
        raise HarnessError(
            f"{path}: format version {found}, this harness reads version {version}: {advice}"
        )
