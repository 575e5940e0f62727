"""The pipeline's cache misses of one host: bytes the storage served, counted where the kernel
cannot count them (FUSE, other file systems without per-process read accounting).

Before each read the pipeline asks ``mincore`` which of the pages it is about to read are absent
from the page cache: those are the bytes this read makes the storage serve (a page evicted and
read again is served again; the host's page ledger, ``harness.pipeline.accounting``, keeps the
first-time count apart). Every rank and worker of the host adds them to one counter in shared memory
(``MissCounter``, a file next to the ledger); the io collector samples it as it samples
``/proc/<pid>/io``, so its rate over the measured window is the run's read MB/s on such a mount.

Why not the interface's byte counter: it also carries other traffic and the protocol's own bytes
(headers, metadata calls), so it is the cross-check, not the figure.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
from pathlib import Path

_COUNTER = struct.Struct("<Q")


def missed_bytes_path(run_id: str) -> Path:
    """Where the host's counter of run ``run_id`` lives: shared memory (never the storage under
    test), else the temporary folder; beside the page ledger."""
    shm = Path("/dev/shm")
    folder = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return folder / f"harness-misses-{run_id}"


class MissCounter:
    """One cumulative count of bytes, shared by every process of a host: ``add`` under an
    exclusive ``flock``, ``value`` without one (an aligned 8-byte load is never torn)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pid = -1
        self._fd = -1
        self._map: mmap.mmap | None = None

    @classmethod
    def create(cls, path: Path) -> MissCounter:
        """A zero counter at ``path`` (a leftover of the same name is replaced)."""
        scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        scratch.write_bytes(_COUNTER.pack(0))
        os.replace(scratch, path)
        return cls(path)

    def __getstate__(self) -> dict[str, Path]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Path]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def _opened(self) -> mmap.mmap:
        if self._pid != os.getpid() or self._map is None:  # forked: a descriptor of its own
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            self._map = mmap.mmap(self._fd, _COUNTER.size)
            self._pid = os.getpid()
        return self._map

    def add(self, count: int) -> None:
        if count <= 0:
            return
        counter = self._opened()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            (value,) = _COUNTER.unpack_from(counter, 0)
            _COUNTER.pack_into(counter, 0, value + count)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def value(self) -> int | None:
        """The count now; None when the counter does not exist (yet, or any more)."""
        try:
            return int(_COUNTER.unpack_from(self._opened(), 0)[0])
        except (OSError, ValueError):
            self._map = None
            return None

    def close(self) -> None:
        if self._map is not None and self._pid == os.getpid():
            self._map.close()
            os.close(self._fd)
        self._map, self._pid = None, -1

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
