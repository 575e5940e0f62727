"""Capacity: the most emulated accelerators this storage and this client keep busy, and what
stops the next one.

The pure parts are importable without running anything: ``search`` (which count to probe next,
and the answer) and ``limiter`` (what held a probe back); ``ceiling`` measures the storage's read
rate. ``orchestrate.search_capacity`` runs a whole search (``probes``: real emulated runs;
``hosts``: one controller per host under torchrun) and writes ``capacity.json``
(``harness.results.capacity_file``); import it from there, as it loads the run machinery.
"""

from harness.capacity.limiter import (
    BARRIER_PCT,
    CPU_SHARE,
    PAGE_CACHE_SHARE,
    STORAGE_SHARE,
    Limiter,
    name_limiter,
)
from harness.capacity.search import Probe, Search

__all__ = [
    "BARRIER_PCT",
    "CPU_SHARE",
    "PAGE_CACHE_SHARE",
    "STORAGE_SHARE",
    "Limiter",
    "Probe",
    "Search",
    "name_limiter",
]
