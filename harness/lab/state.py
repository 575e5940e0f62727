"""The lab's state file (``/run/harness-lab/state.json``): what ``up`` made and started, as one
typed model that ``up`` writes after every step (so that ``down`` can undo a half-done ``up``)
and ``status``, ``rate``, ``down`` and the harness's cold runs (``export_side``) read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError
from harness.files import atomic_write, check_format, read_json
from harness.lab.plan import STATE_DIR, STATE_FILE

FORMAT: Final = "harness-lab"
FORMAT_VERSION: Final = 1


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabProcess(Record):
    """A process the lab started. ``start_ticks`` (field 22 of ``/proc/PID/stat``) tells the
    process from a later one that got the same pid, so that ``down`` never kills a stranger."""

    role: str  # "sshd", "node_exporter", "sshfs client1"
    pid: int
    start_ticks: int
    namespace: str | None  # the network namespace it runs in; None: this machine's own
    log: Path


class LabLink(Record):
    """The veth pair between the storage host and one client, and its limits (on the storage
    end: what the client reads)."""

    client: int
    namespace: str
    storage_interface: str
    storage_address: str  # with its prefix length, e.g. 10.201.1.1/24
    client_interface: str
    client_address: str
    rate: str  # as given, e.g. "50mbit"
    rate_bits_per_s: int
    burst_bytes: int
    queue_latency_ms: int
    delay_ms: float | None  # netem's added delay (one way: storage -> client), None: none


class LabMount(Record):
    client: int
    mount_point: Path
    source: str  # root@10.201.1.1:/srv/harness-lab/export
    command: list[str]


class LabState(Record):
    format: Literal["harness-lab"] = FORMAT
    format_version: int = FORMAT_VERSION
    phase: Literal["starting", "up"]  # "starting" until every step of up has succeeded
    started_at: str  # UTC, ISO 8601
    setup_s: float | None = None  # how long up took, once up
    export: Path
    export_device: str | None  # the export's disk as /proc/diskstats names it (e.g. vda)
    clients: int
    namespaces: list[str] = []
    links: list[LabLink] = []
    processes: list[LabProcess] = []
    mounts: list[LabMount] = []
    exporter_url: str | None = None
    created_paths: list[Path] = []  # folders the lab made and removes (not the export)

    def export_side(self, path: Path) -> Path | None:
        """For a path under one of the lab's mount points, the same file's path in the export
        folder (the storage host's side); None for any other path."""
        for candidate in _spellings(path):
            for mount in self.mounts:
                try:
                    relative = candidate.relative_to(mount.mount_point)
                except ValueError:
                    continue
                return self.export / relative
        return None


def _spellings(path: Path) -> list[Path]:
    """The path as written (made absolute) and, where it differs, with its symbolic links
    resolved: a dataset folder may be a link into a lab mount."""
    plain = Path(os.path.abspath(path))
    resolved = Path(os.path.realpath(path))
    return [plain] if resolved == plain else [plain, resolved]


def state_path(state_dir: Path = STATE_DIR) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: Path = STATE_DIR) -> LabState | None:
    """The lab's state, or None when no lab is up (no state file); a one-line HarnessError
    naming the file when it cannot be read or is not a lab state."""
    path = state_path(state_dir)
    document = read_json(path)
    if document is None:
        return None
    check_format(path, document, FORMAT, FORMAT_VERSION)
    try:
        return LabState.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise HarnessError(f"{path}: {where}: {error['msg']}") from None


def write_state(state: LabState, state_dir: Path = STATE_DIR) -> None:
    text = json.dumps(state.model_dump(mode="json"), indent=1) + "\n"
    with atomic_write(state_path(state_dir), fsync=True) as handle:
        handle.write(text.encode())


def export_side(path: Path, state_dir: Path = STATE_DIR) -> Path | None:
    """For a path under a lab mount point, the same file's path in the export folder (a cold
    run evicts both: one kernel, one page cache); None when no lab is up or the path is not
    under its mounts."""
    state = read_state(state_dir)
    return None if state is None else state.export_side(path)
