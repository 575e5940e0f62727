"""The ground floor for files: atomic writes, writable folders, clear disk errors, format checks.

Every file the harness writes appears under its final name only once it is complete (written to a
temporary name beside it, then renamed), so a killed or failed run never leaves a file that looks
finished. Temporary names start with ``.`` and contain ``.tmp-`` so that a resume can sweep them.
"""

from __future__ import annotations

import errno
import json
import os
import stat
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


class DiskError(HarnessError):
    """A file that could not be written (a full disk, a read-only or vanished folder)."""


def disk_error(exc: OSError, path: Path) -> DiskError:
    """One line that names the file and says what went wrong on the disk."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(f"disk full while writing {path}: free space or choose another path")
    reason = exc.strerror or str(exc)
    return DiskError(f"cannot write {path}: {reason}")


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` if needed and prove that a file can be written in it, before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"cannot write in {path}: {unwritable_reason(path, exc)}") from None


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words: "folder", "named pipe (FIFO)", ..."""
    kinds = (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISREG, "regular file"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symlink"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def unwritable_reason(path: Path, exc: OSError) -> str:
    """Why no file could be made in the folder ``path``, from what is really there rather than
    the errno's words alone (a device or a kernel file system answers "File exists" or "No
    such file or directory" for reasons a user cannot guess)."""
    existing = None  # the nearest of path and its parents that is there
    for place in (path, *path.parents):
        try:
            info = os.stat(place)
        except OSError:
            continue  # missing, or under a file that is not a folder: look higher
        if not stat.S_ISDIR(info.st_mode):
            return f"{place} is not a folder (a {file_kind(info.st_mode)})"
        existing = place
        break
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if exc.errno == errno.ENOENT and existing is not None:
        # The folder is there, yet nothing can be created in it: /proc, /sys and the like.
        where = "" if existing == path else f"{existing} is "
        return f"{where}not a regular folder (its file system takes no new files, like /proc)"
    return exc.strerror or str(exc)


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


def check_format(
    path: Path, document: dict[str, Any], name: str, version: int, older: tuple[int, ...] = ()
) -> None:
    """Refuse, in one line, a file of another kind or of a format version not readable here
    (``version``, or one of the ``older`` versions its reader still accepts)."""
    if document.get("format") != name:
        raise HarnessError(f"{path}: not a {name} file (format {document.get('format')!r})")
    found = document.get("format_version")
    if found != version and found not in older:
        advice = (
            "regenerate it with this harness (--force)"
            if isinstance(found, int) and found < version
            else "upgrade the harness to read it"
        )
        raise HarnessError(
            f"{path}: format version {found}, this harness reads version {version}: {advice}"
        )
