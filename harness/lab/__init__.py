"""The network storage lab: on this one machine, a storage host exporting a folder over sshfs
and running prometheus-node-exporter, and 1 to 4 client hosts mounting it over rate-limited
links, each host a network namespace (``harness lab up|down|status|rate|exec``).

``plan`` names everything and builds the command lines (pure), ``state`` is the typed state
file and ``export_side``, ``system`` asks the kernel and runs the tools, ``lifecycle`` brings
the lab up and down. One kernel serves every host: they share the page cache and the disks.
"""

from __future__ import annotations

from harness.lab.lifecycle import (
    LabUnavailable,
    UpRequest,
    down,
    lab_unavailable,
    require_state,
    set_rate,
    status,
    up,
)
from harness.lab.plan import Rate, parse_rate
from harness.lab.state import LabState, export_side, read_state

__all__ = [
    "LabState",
    "LabUnavailable",
    "Rate",
    "UpRequest",
    "down",
    "export_side",
    "lab_unavailable",
    "parse_rate",
    "read_state",
    "require_state",
    "set_rate",
    "status",
    "up",
]
