"""Emulated preprocessing: read what the real pipeline reads, then wait instead of decoding.

With ``pipeline.preprocess: emulated`` a DataLoader worker reads each sample's bytes through its
source's own read path (``Source.read``: the same files, byte ranges, order, read-ahead and page
ledger as ``Source.load``), then waits a preprocessing time drawn from a profile measured by
``harness calibrate --preprocess`` (decode, crop and the sample's share of the collate, on the
machine it ran on) and hands on a placeholder of the right shape. So a small test client loads
the storage as a client with more cores would, at no CPU of its own.

The waits are sleeps, and at most ``cores`` of them run at once on the host: the emulated
client's cores, a host-wide counting semaphore (``HostSlots``, a POSIX named semaphore under
/dev/shm, since the workers of every rank are processes). With a server shape
(``training.server``) each server's accelerators share a semaphore of its cores.

Profile file format: ``{"format": "harness-preprocess-profile", "format_version": 1, ...}``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError
from harness.files import atomic_write, check_format, read_json
from harness.stats import TimeDraws

if TYPE_CHECKING:
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import Source

FORMAT = "harness-preprocess-profile"
FORMAT_VERSION = 1


# --- the profile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessSettings:
    """What a sample's preprocessing time depends on, checked against the scenario."""

    dataset: str  # the dataset kind (image_collage, video)
    format: str  # what is decoded: the collage's or the frame cache's file format (jpeg, png, npy)
    crop: int
    batch_size: int  # the collate's share per sample is measured on batches of this size

    def differences(self, other: PreprocessSettings) -> list[str]:
        return [
            f"{key} {getattr(self, key)} in the profile, {getattr(other, key)} here"
            for key in ("dataset", "format", "crop")
            if getattr(self, key) != getattr(other, key)
        ]


@dataclass(frozen=True)
class PreprocessProfile:
    """Per-sample preprocessing times measured on one CPU."""

    name: str
    cpu: str  # the processor's model
    cores: int  # the cores the measuring process was given
    settings: PreprocessSettings
    sample_s: list[float]
    mean_sample_s: float
    how: str
    created: str = ""
    software: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the file it was read from

    def summary_line(self) -> str:
        s = self.settings
        return (
            f"{self.name}  {self.mean_sample_s * 1e3:.2f} ms/sample ({s.dataset}, {s.format}, crop "
            f"{s.crop}) on {self.cpu} ({self.cores} cores)"
        )

    def document(self) -> dict[str, Any]:
        times = np.asarray(self.sample_s, dtype=np.float64)
        stats = {f"p{q}_s": float(np.percentile(times, q)) for q in (50, 90, 99)}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "created": self.created,
            "cpu": self.cpu,
            "cores": self.cores,
            "software": self.software,
            "settings": asdict(self.settings),
            "mean_sample_s": self.mean_sample_s,
            **stats,
            "std_s": float(times.std()),
            "sample_s": self.sample_s,
            "how": self.how,
        }


def read_preprocess_profile(path: Path) -> PreprocessProfile:
    document = read_json(path)
    if document is None:
        raise HarnessError(f"pipeline.preprocess_profile {path}: no such file")
    check_format(path, document, FORMAT, FORMAT_VERSION)  # the project's one-line refusal
    try:
        sample_s = [float(t) for t in document["sample_s"]]
        mean = float(document["mean_sample_s"])
        if not sample_s or not all(t >= 0 and math.isfinite(t) for t in [mean, *sample_s]):
            raise ValueError("sample times must be a non-empty list of finite numbers >= 0")
        return PreprocessProfile(
            name=str(document["name"]),
            cpu=str(document["cpu"]),
            cores=int(document["cores"]),
            settings=PreprocessSettings(**document["settings"]),
            sample_s=sample_s,
            mean_sample_s=mean,
            how=str(document.get("how", "")),
            created=str(document.get("created", "")),
            software=dict(document.get("software") or {}),
            source=str(path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: malformed preprocessing profile: {exc}") from None


def write_preprocess_profile(profile: PreprocessProfile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write((json.dumps(profile.document(), indent=2) + "\n").encode())
    return path


def source_settings(source: Source, dataset: str, crop: int, batch_size: int) -> PreprocessSettings:
    return PreprocessSettings(dataset, source.data_format(), crop, batch_size)


# --- the measurement ----------------------------------------------------------------------------


def measure_preprocessing(
    source: Source, plan: SamplePlan, crop: int, batch_size: int, samples: int, warmup: int
) -> list[float]:
    """Per-sample preprocessing seconds of the real pipeline on this machine, without the read:
    each sample is read once (its bytes then come from the page cache), its read timed again,
    then its whole ``load`` (read + decode + crop) timed: load minus read. Each batch's collate
    (the stacking of its samples) adds its share per sample."""
    import torch

    from harness.pipeline.batch import Sample

    times: list[float] = []
    batch: list[tuple[float, Sample]] = []
    for number in range(warmup + samples):
        ref = plan.train(number)
        source.read(ref, crop)
        began = time.perf_counter()
        source.read(ref, crop)
        read_s = time.perf_counter() - began
        began = time.perf_counter()
        image, mask, _reads = source.load(ref, crop)
        sample = Sample(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask), 0)
        load_s = time.perf_counter() - began
        if number < warmup:
            continue
        batch.append((max(0.0, load_s - read_s), sample))
        if len(batch) == batch_size or number == warmup + samples - 1:
            times.extend(_with_collate(batch))
            batch = []
    return [round(t, 7) for t in times]


def _with_collate(batch: list[tuple[float, Any]]) -> list[float]:
    from harness.pipeline.batch import Batch

    began = time.perf_counter()
    Batch.collate([sample for _, sample in batch])
    share = (time.perf_counter() - began) / len(batch)
    return [decode_s + share for decode_s, _ in batch]


# --- the host's cores: a named counting semaphore -----------------------------------------------


_O_CREAT = os.O_CREAT
_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.sem_open.restype = ctypes.c_void_p
        lib.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
        for name in ("sem_wait", "sem_post", "sem_close"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.sem_unlink.argtypes = [ctypes.c_char_p]
        lib.sem_getvalue.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        _libc = lib
    return _libc


class HostSlots:
    """``slots`` slots shared by every process on the host that opens ``name``: a POSIX named
    semaphore (``sem_open``; its first opener creates it with ``slots``). ``hold()`` blocks in the
    kernel until a slot is free (no CPU while it waits). Opened before the DataLoader forks its
    workers, the handle is theirs too; unpickled, it is opened again."""

    def __init__(self, name: str, slots: int) -> None:
        self.name, self.slots = name, slots
        self._handle: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "slots": self.slots, "_handle": None}

    def open(self) -> HostSlots:
        if self._handle is None:
            handle = _c().sem_open(self.name.encode(), _O_CREAT, 0o600, self.slots)
            if not handle:
                code = ctypes.get_errno()
                raise HarnessError(
                    f"emulated preprocessing: cannot open the host's semaphore {self.name}: "
                    f"{os.strerror(code)} (POSIX semaphores live in /dev/shm)"
                )
            self._handle = handle
        return self

    @contextmanager
    def hold(self) -> Iterator[None]:
        handle = self.open()._handle
        while _c().sem_wait(handle) != 0:
            if ctypes.get_errno() != errno.EINTR:  # a signal: wait again
                raise HarnessError(f"{self.name}: sem_wait: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            _c().sem_post(handle)

    def free(self) -> int:
        """Slots free now (for tests and checks)."""
        value = ctypes.c_int()
        _c().sem_getvalue(self.open()._handle, ctypes.byref(value))
        return value.value

    def close(self) -> None:
        """Release this process's mapping of the semaphore (the name stays: ``unlink``)."""
        if self._handle is not None:
            _c().sem_close(self._handle)
            self._handle = None

    def unlink(self) -> None:
        """Remove the name (processes that have it open keep using it)."""
        _c().sem_unlink(self.name.encode())


def slots_name(run_id: str, server: int) -> str:
    """The semaphore of server ``server`` of run ``run_id`` (short: names are at most 251)."""
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:16]
    return f"/harness-preprocess-{digest}-{server}"


def remove_slots(run_id: str, servers: int) -> None:
    for server in range(servers):
        HostSlots(slots_name(run_id, server), 1).unlink()


SHM = Path("/dev/shm")


def remove_stale_slots() -> list[Path]:
    """Remove the semaphores of runs that are gone (killed before they could remove theirs): a
    named semaphore is a file ``/dev/shm/sem.NAME`` that every process using it maps, so one
    whose inode no process maps any more belongs to nobody. (By inode, not by name: the process
    that created one maps it under the temporary name glibc made it with.) Returns what was
    removed."""
    stale = {}
    for path in SHM.glob("sem.harness-preprocess-*"):
        try:
            stale[path.stat().st_ino] = path
        except OSError:
            continue
    for maps in Path("/proc").glob("[0-9]*/maps"):
        if not stale:
            return []
        try:
            lines = maps.read_text(errors="replace").splitlines()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for line in lines:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and "/dev/shm/" in fields[5] and fields[4].isdigit():
                stale.pop(int(fields[4]), None)
    for path in stale.values():
        path.unlink(missing_ok=True)
    return sorted(stale.values())


# --- a run's emulation --------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessPlan:
    """Where a run's preprocessing times come from, as recorded in its manifest and summary."""

    profile: PreprocessProfile
    speed: float  # the emulated client's per-core speed relative to the profile's CPU
    cores: int  # slots per pool: the host's emulated cores, or a server's
    per_server: int | None  # accelerators per server (a pool each), None: one pool per host

    def document(self) -> dict[str, Any]:
        return {
            "preprocess": "emulated",
            "preprocess_profile": self.profile.name,
            "preprocess_profile_file": self.profile.source,
            "preprocess_profile_cpu": self.profile.cpu,
            "preprocess_profile_cores": self.profile.cores,
            "preprocess_profile_format": self.profile.settings.format,
            "preprocess_profile_mean_sample_s": self.profile.mean_sample_s,
            "preprocess_profile_samples": len(self.profile.sample_s),
            "preprocess_speed": self.speed,
            "preprocess_mean_sample_s": self.profile.mean_sample_s / self.speed,
            "preprocess_cores": self.cores,
            "preprocess_cores_per": "server" if self.per_server else "host",
        }

    def servers(self, accelerators: int) -> int:
        """The pools ``accelerators`` ranks on one host use."""
        return math.ceil(accelerators / self.per_server) if self.per_server else 1

    def for_rank(self, run_id: str, rank: int, seed: int) -> PreprocessEmulation:
        server = rank // self.per_server if self.per_server else 0
        return PreprocessEmulation(
            HostSlots(slots_name(run_id, server), self.cores),
            self.profile.sample_s,
            self.profile.mean_sample_s,
            1 / self.speed,
            (seed, rank),
        )


class PreprocessEmulation:
    """One rank's emulated preprocessing: a drawn wait per sample, in one of the host's slots.
    Each process (a DataLoader worker) draws from its own generator, seeded by the run's seed,
    the rank and the worker's number."""

    def __init__(
        self, slots: HostSlots, sample_s: list[float], mean_s: float, scale: float, seed: Any
    ) -> None:
        self.slots = slots
        self._times = (sample_s, mean_s, scale, seed)
        self._draws: TimeDraws | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_draws": None, "_pid": 0}

    def draw(self) -> float:
        if self._draws is None or self._pid != os.getpid():  # a forked worker draws its own
            from torch.utils.data import get_worker_info

            sample_s, mean_s, scale, seed = self._times
            worker = get_worker_info()
            self._pid = os.getpid()
            self._draws = TimeDraws(
                sample_s, mean_s, scale, (*seed, worker.id + 1 if worker else 0)
            )
        return self._draws.next()

    def wait(self) -> float:
        """Wait one sample's preprocessing time in a slot; the time drawn."""
        seconds = self.draw()
        with self.slots.hold():
            time.sleep(seconds)
        return seconds
