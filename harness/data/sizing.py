"""How big a generated dataset will be, whether it fits, and how long it will take.

``size: 5x-ram`` follows MLPerf Storage: the dataset must be at least five times the RAM of all
the clients reading it (``--client-ram`` per client, ``--hosts`` clients), so that it cannot be
served from their page caches. The count of images (collage) or frames per video is derived from
the bytes one image or frame takes on disk: exact for raw ``npy`` images, measured on the pool
for videos and compressed images.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

RAM_MULTIPLE = 5
SPACE_MARGIN = 1.02  # container overheads, manifests, the pool files kept until a video is done

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
    "PIB": 2**50,
}


def parse_bytes(text: str) -> int:
    """``"256GB"`` (10^9), ``"512GiB"`` (2^30), ``"1.5TB"``, or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise HarnessError(
            f"cannot read {text!r} as a size: give a number with a unit, e.g. 512GB or 256GiB"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def machine_ram() -> int:
    """This machine's RAM in bytes (MemTotal)."""
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise HarnessError("/proc/meminfo has no MemTotal: give --client-ram")


@dataclass(frozen=True)
class Clients:
    """The machines that will read the dataset, as MLPerf Storage counts them."""

    ram_bytes: int  # per client
    hosts: int = 1

    @classmethod
    def this_machine(cls) -> Clients:
        return cls(machine_ram(), 1)

    def target_bytes(self) -> int:
        return RAM_MULTIPLE * self.ram_bytes * self.hosts

    def describe(self) -> str:
        hosts = f"{self.hosts} clients x " if self.hosts > 1 else ""
        return f"{RAM_MULTIPLE} x {hosts}{self.ram_bytes / 1e9:.1f} GB of RAM"


def count_for(target_bytes: int, unit_bytes: float, units_per_count: int = 1) -> int:
    """How many counts (images, or frames per video with ``units_per_count`` videos) reach
    ``target_bytes`` when one unit takes ``unit_bytes``."""
    return max(1, math.ceil(target_bytes / (unit_bytes * units_per_count)))


@dataclass(frozen=True)
class Plan:
    """What a generation will write and whether the storage can hold it."""

    root: Path
    planned_bytes: int  # the whole dataset
    todo_bytes: int  # what is left to write (less on a resume)
    exact: bool  # False when estimated from a sample (compressed data)
    write_rate: float | None = None  # bytes/s measured by a short probe, when measured

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def check_space(self) -> None:
        """Refuse, naming the numbers, when what is left to write does not fit."""
        free = self.free_bytes()
        needed = int(self.todo_bytes * SPACE_MARGIN)
        if needed > free:
            raise HarnessError(
                f"not enough space on {self.root}: the dataset needs "
                f"{'' if self.exact else '~'}{human_bytes(needed)} more, "
                f"{human_bytes(free)} is free: free space, choose another dataset.path, "
                "or generate a smaller dataset"
            )

    def describe(self) -> str:
        size = f"{'' if self.exact else '~'}{human_bytes(self.planned_bytes)}"
        text = f"planned {size}, {human_bytes(self.todo_bytes)} to write, "
        text += f"{human_bytes(self.free_bytes())} free on {self.root}"
        if self.write_rate:
            seconds = self.todo_bytes / self.write_rate
            text += (
                f"; at least {_duration(seconds)} at the {self.write_rate / 1e6:.0f} MB/s "
                "this disk wrote in a short probe"
            )
        else:
            text += "; small: no time estimate"
        return text


def human_bytes(count: float) -> str:
    """Decimal units: GB at 10^9 bytes and above, else MB."""
    return f"{count / 1e9:.2f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def probe_write_rate(root: Path, size: int = 64 * 2**20) -> float:
    """Bytes/s of a short synced write of incompressible data in ``root`` (removed after)."""
    import os
    import time

    block = os.urandom(2**20)
    path = root / f".write-rate-probe.tmp-{os.getpid()}"
    try:
        started = time.perf_counter()
        with open(path, "wb") as handle:
            for _ in range(size // len(block)):
                handle.write(block)
            handle.flush()
            os.fdatasync(handle.fileno())
        return size / max(1e-6, time.perf_counter() - started)
    except OSError:
        return 0.0
    finally:
        path.unlink(missing_ok=True)
