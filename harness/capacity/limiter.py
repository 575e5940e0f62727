"""What limits a capacity probe, named from the numbers it measured, with the evidence: the
storage (on a network mount: the storage, the network link, or the two not told apart), the
client's CPU, synchronisation, the page cache, or the harness itself. Pure.

Every threshold is one constant below, and the README's limiter table states each of them
(``tests/test_capacity_search.py`` checks that they agree). A scenario's limiter is that of its
judged probe, the median repeat of the count whose verdict decided
(``harness.capacity.search.Search.judged_probe``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# read MB/s at or above this share of the ceiling: the storage is the limit (on a network mount:
# the storage or the link to it, told apart by the server's own view)
STORAGE_SHARE = 0.90
# a network mount at its ceiling whose server's disks are busy at least this share of the time:
# the storage; below it: the network link
SERVER_DISK_SHARE = 0.90
# the run's processes' CPU at or above this share of the cores its workers can use: the client
CPU_SHARE = 0.90
# the stop vote taking this % of the wall time or more (with 2 or more accelerators):
# synchronisation limits
BARRIER_PCT = 5.0
# more than this share of the bytes asked for came from memory, and the dataset fits in RAM:
# the page cache served the probe
PAGE_CACHE_SHARE = 0.5


@dataclass(frozen=True)
class Limiter:
    # storage | network link | storage or link | client CPU | synchronisation | page cache |
    # harness | none
    name: str
    evidence: str


def name_limiter(
    metrics: dict[str, Any],
    *,
    passed: bool,
    ceiling_MBps: float | None,
    ceiling_how: str,
    cores: int,
    dataset_bytes: int | None,
    page_cache_bytes: int | None,
    accelerators: int = 1,
    workers: int = 1,
    mount: dict[str, Any] | None = None,
) -> Limiter:
    """What held this probe back, from what it measured, with the evidence in numbers.

    In order: the storage (its read rate at the ceiling), the client's CPU (the cores the
    pipeline can use saturated: each accelerator's workers, at most the client's cores),
    synchronisation (the stop vote's share of the time); then the page cache (it served most
    reads of a dataset that fits in memory: not a storage result), and otherwise the harness
    itself (nothing is saturated, yet the accelerators wait). A limiter found while the page
    cache served most reads says so too. A passing probe names what is closest to its limit.

    ``mount``: the mount the probe read (``summary.json`` ``storage``). On a network mount the
    ceiling is the mount's (storage and link together): at it, the server's disks (a Prometheus
    server view, ``server_disk_util_pct``) tell the storage from the link; without that view
    the limiter is "storage or link"."""
    read = _value(metrics, "read_MBps")
    requested = _value(metrics, "requested_MBps")
    cpu = _value(metrics, "cpu_pct")
    barrier = _value(metrics, "barrier_pct")
    wait = _value(metrics, "data_wait_pct")
    served = None if read is None or not requested else max(0.0, 1 - read / requested)
    from_memory = (
        dataset_bytes is not None
        and page_cache_bytes is not None
        and dataset_bytes < page_cache_bytes
        and served is not None
        and served > PAGE_CACHE_SHARE
    )
    found = _saturated(read, ceiling_MBps, ceiling_how, cpu, cores, accelerators, workers, barrier)
    if found is not None and found.name == "storage" and (mount or {}).get("server"):
        found = _storage_or_link(found, mount or {}, _value(metrics, "server_disk_util_pct"))
    if found is not None:
        if from_memory:
            found = Limiter(
                found.name,
                f"{found.evidence}; {served:.0%} of the bytes asked for came from memory, so "
                "the storage itself was not measured",
            )
        return found
    if from_memory:
        assert dataset_bytes is not None and page_cache_bytes is not None  # from_memory says so
        return Limiter(
            "page cache",
            f"{served:.0%} of the bytes asked for came from memory and the dataset "
            f"({dataset_bytes / 1e9:.2f} GB) fits in the page cache ({page_cache_bytes / 1e9:.1f} "
            "GB): this is not a storage result. MLPerf Storage asks for a dataset of at least 5x "
            "the clients' RAM; generate a larger one (or limit the client's memory)",
        )
    if passed:
        return Limiter("none", _headroom(read, ceiling_MBps, cpu, cores))
    return Limiter(
        "harness",
        f"the accelerators waited for data {wait or 0:.1f} % and for each other "
        f"{barrier or 0:.1f} % of the time while neither the storage nor the CPU was saturated "
        f"({_headroom(read, ceiling_MBps, cpu, cores)}): too few reads in flight; more "
        "pipeline.workers, or pipeline.read_threads for files read whole",
    )


def _saturated(
    read: float | None,
    ceiling: float | None,
    ceiling_how: str,
    cpu: float | None,
    cores: int,
    accelerators: int,
    workers: int,
    barrier: float | None,
) -> Limiter | None:
    if read is not None and ceiling:
        share = read / ceiling
        if share >= STORAGE_SHARE:
            return Limiter(
                "storage",
                f"read {read:.1f} MB/s, {share:.0%} of the {ceiling:.1f} MB/s ceiling "
                f"({ceiling_how})",
            )
    usable = min(cores, accelerators * max(1, workers)) if cores else 0
    if cpu is not None and usable:
        share = cpu / (100.0 * usable)
        if share >= CPU_SHARE:
            more = (
                ""
                if usable == cores
                else f"; more pipeline.workers would use the other {cores - usable} core(s)"
            )
            return Limiter(
                "client CPU",
                f"the run's processes used {cpu:.0f} % of a core, {share:.0%} of the {usable} "
                f"core(s) its {accelerators} x {max(1, workers)} workers can use (decode, crop "
                f"and collate){more}",
            )
    if accelerators > 1 and barrier is not None and barrier >= BARRIER_PCT:
        return Limiter(
            "synchronisation",
            f"the stop vote between accelerators took {barrier:.1f} % of the wall time "
            "(each step waits for the slowest accelerator)",
        )
    return None


def _storage_or_link(
    at_ceiling: Limiter, mount: dict[str, Any], disk_util: float | None
) -> Limiter:
    """A network mount read at its ceiling: the server's disks say whether they or the link to
    them held the probe back."""
    where = f"{mount.get('fs_type')} mount from {mount.get('server')}" + (
        f" over {mount['interface']}" if mount.get("interface") else ""
    )
    evidence = f"{at_ceiling.evidence}; a {where}"
    if disk_util is None:
        return Limiter(
            "storage or link",
            f"{evidence}: the mount's ceiling is the storage and the link together, and no "
            "server view (collectors.prometheus) tells them apart",
        )
    if disk_util >= 100 * SERVER_DISK_SHARE:
        return Limiter("storage", f"{evidence}; the server's disks were busy {disk_util:.0f} %")
    return Limiter(
        "network link",
        f"{evidence}; the server's disks were busy only {disk_util:.0f} % of the time",
    )


def _headroom(read: float | None, ceiling: float | None, cpu: float | None, cores: int) -> str:
    parts = []
    if read is not None and ceiling:
        parts.append(f"read {read:.1f} of {ceiling:.1f} MB/s")
    if cpu is not None and cores:
        parts.append(f"CPU {cpu:.0f} % of {100 * cores} %")
    return ", ".join(parts) or "no resource measured"


def _value(metrics: dict[str, Any], name: str) -> float | None:
    entry = metrics.get(name)
    if isinstance(entry, dict):
        entry = entry.get("value")
    return None if entry is None else float(entry)
