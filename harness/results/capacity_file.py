"""``capacity.json``, the result of a capacity search: one model that the writer
(``harness.capacity``) fills and dumps, and every reader (the report) validates.

The fields come in the order the file has always had. Reading is lenient where the file format
always was: a null stands for the field's default, a number where text is expected is read as
text, a metric this harness does not know (a later harness of the same version) is kept when it
is a number and dropped otherwise, and unknown fields are ignored. A wrong shape is refused in one
line naming the file and the field, e.g. ``capacity.json: scenarios[0].probes[0].accelerators:
expected a whole number, found 'four'``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from harness.errors import HarnessError
from harness.files import atomic_write, check_format, read_json
from harness.results.document import validation_line

FORMAT: Final = "harness-capacity"
FORMAT_VERSION: Final = 1
# The metrics of each probe that capacity.json records (numbers or null)
PROBE_METRICS = (
    "samples_per_s",
    "busy_pct",
    "busy_pct_min",
    "data_wait_pct",
    "barrier_pct",
    "read_MBps",
    "requested_MBps",
    "consumed_MBps",
    "fill_s",
    "cpu_pct",
    "fetch_latency_p50_ms",
    "fetch_latency_p99_ms",
    "link_rx_MBps",  # a network mount: bytes received over the link to its server
    "server_disk_util_pct",  # a Prometheus server view: the server's disks' busy time
    "server_disk_read_MBps",
)


def _null_is(default: Callable[[], Any]) -> BeforeValidator:
    """A null in the file reads as the field's default."""
    return BeforeValidator(lambda value: default() if value is None else value)


def _number(value: Any) -> int | float:
    # One validator rather than ``int | float``: an int stays an int (the file is rewritten as it
    # was read) and a wrong value gives one error, not one per member of the union.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    return value


def _number_as_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _known_metrics(value: Any) -> Any:
    """This harness's metrics, checked; a later harness's numbers kept, its other values not."""
    if not isinstance(value, dict):
        return {} if value is None else value
    return {
        name: entry
        for name, entry in value.items()
        if name in PROBE_METRICS or (isinstance(entry, int | float) and not isinstance(entry, bool))
    }


Number = Annotated[int | float, PlainValidator(_number)]
Text = Annotated[str, BeforeValidator(_number_as_text)]
TextOrEmpty = Annotated[str, BeforeValidator(_number_as_text), _null_is(str)]
Flag = Annotated[bool, _null_is(bool)]
Metrics = Annotated[dict[str, Number | None], BeforeValidator(_known_metrics)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class CapacityThresholds(_Section):
    """The settings of the search (``harness.scenario.CapacitySettings``) under the file's names."""

    min_busy_pct: float | None = None
    min_busy_pct_each: float | None = None
    max_accelerators: int | None = None
    probe_s: float | None = None
    repeat: int | None = None


def accelerator_class(device: str) -> str:
    """The class of accelerator a profile emulates, from its ``device``: "NVIDIA H200" as it is,
    "H100" of "H100 (MLPerf Storage's computation_time, ...)", and "CPU" for a profile calibrated
    on a processor ("cpu: AMD EPYC (1 threads)"): the processor that calibrated it is not the
    client that runs the search, and naming it would say so."""
    if device.lower().startswith("cpu"):
        return "CPU"
    return device.split(" (", 1)[0].strip() or "unknown"


class CapacityProfile(_Section):
    """The compute profile the accelerators emulate, and its scaling to the scenario."""

    profile: Text | None = None
    profile_file: Text | None = None
    profile_device: TextOrEmpty = ""
    profile_mean_step_s: Number | None = None
    profile_samples: int | None = None
    scaling: Text | None = None
    scale: Number | None = None
    scenario_flops_per_batch: Number | None = None
    profile_flops_per_batch: Number | None = None

    @property
    def accelerator_class(self) -> str:
        return accelerator_class(self.profile_device)


class FioCeiling(_Section):
    """fio's read rate over the same files, an optional comparison beside the harness's own."""

    MBps: Number | None = None  # MB = 10^6 B
    bytes_read: int | None = None  # fio's io_bytes
    bytes_total: int | None = None  # the sizes of all the files: fio read them all when equal
    seconds: Number | None = None
    settings: TextOrEmpty = ""  # fio's options, as on its command line
    error: Text | None = None  # why fio gave no rate (not installed, failed)


class CeilingRecord(_Section):
    """How a read ceiling was measured (``harness.capacity.ceiling``); absent from the files of
    earlier harnesses, which only have ``ceiling_MBps`` and ``ceiling_how``."""

    reader: TextOrEmpty = ""  # "harness": the harness's own whole-file reader
    mode: TextOrEmpty = ""  # "O_DIRECT" or "buffered, each file evicted first"
    mode_reason: TextOrEmpty = ""  # e.g. "ramfs at /mnt/x refuses O_DIRECT"
    readers: int | None = None  # threads reading at once
    request_bytes: int | None = None
    seed: int | None = None  # of the shuffled file order
    files_read: int | None = None  # distinct files read whole
    files_total: int | None = None
    file_reads: int | None = None  # whole-file reads, repeats included
    bytes_read: int | None = None
    bytes_total: int | None = None  # the sizes of all the files
    passes: Number | None = None  # file_reads / files_total
    seconds: Number | None = None
    MBps: Number | None = None  # MB = 10^6 B
    errors: Annotated[list[Text], _null_is(list)] = Field(default_factory=list)
    fio: FioCeiling | None = None


class HostCeiling(_Section):
    """One host's read ceiling and cores (several hosts search together under torchrun)."""

    host: TextOrEmpty = ""  # its name (HARNESS_HOST_NAME, else the host name)
    address: Text | None = None  # hosts that share a name are told apart by these two
    node_rank: int | None = None
    ceiling_MBps: Number | None = None
    ceiling_how: TextOrEmpty = ""
    ceiling: CeilingRecord | None = None
    client_cores: int | None = None


class HostProbe(_Section):
    """One host's share of a probe run across several hosts."""

    host: TextOrEmpty = ""
    address: Text | None = None
    node_rank: int | None = None
    run: Text | None = None
    complete: Annotated[bool, _null_is(lambda: True)] = True
    reason: Text | None = None
    metrics: Metrics = Field(default_factory=dict)
    limiter: TextOrEmpty = ""
    evidence: TextOrEmpty = ""
    page_cache_hit_share: Number | None = None


class ProbeRecord(_Section):
    """One probe: a run of ``accelerators`` emulated accelerators (on each host), and what the
    search made of it."""

    accelerators: Annotated[int, Field(ge=1)]
    accelerators_total: int | None = None
    busy_pct: Number | None = None
    busy_pct_min: Number | None = None
    complete: Annotated[bool, _null_is(lambda: True)] = True
    verdict: Annotated[Literal["pass", "fail"], _null_is(lambda: "fail")] = "fail"
    limiter: Annotated[Text, _null_is(lambda: "not named")] = "not named"
    evidence: TextOrEmpty = ""
    page_cache_hit_share: Number | None = None
    metrics: Metrics = Field(default_factory=dict)
    run: Text | None = None  # the run folder, as the search wrote it
    reason: Text | None = None  # why the run stopped early, when it did
    hosts: list[HostProbe] | None = None  # each host's share, when several probed together
    servers: int | None = None  # whole servers on each host, where a server shape is set

    @model_serializer(mode="wrap")
    def _servers_where_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        document: dict[str, Any] = handler(self)
        if document.get("servers") is None:  # the file as before without a server shape
            document.pop("servers", None)
        return document


class ServerRecord(_Section):
    """The server shape a search grew in (``training.server``, ``harness capacity --server``)."""

    accelerators: int | None = None
    cores: int | None = None


class ScenarioSearch(_Section):
    """One scenario's search: the profile, the read ceiling, every probe, the answer and (once
    the search is over) its limiter."""

    scenario: Annotated[Text, _null_is(lambda: "unnamed scenario")] = "unnamed scenario"
    scenario_file: TextOrEmpty = ""
    profile: Annotated[CapacityProfile, _null_is(dict)] = Field(default_factory=CapacityProfile)
    hosts: Annotated[list[HostCeiling], _null_is(list)] = Field(default_factory=list)
    ceiling_MBps: Number | None = None
    ceiling_how: TextOrEmpty = ""
    ceiling: CeilingRecord | None = None  # how this host's ceiling was measured
    client_cores: int | None = None
    workers: int | None = None
    max_accelerators: int | None = None  # None: no probe finished
    capped: Flag = False  # even the maximum passed: the answer is a lower bound
    probes: Annotated[list[ProbeRecord], _null_is(list)] = Field(default_factory=list)
    seconds: Number | None = None
    # Named when the search is over; absent from the file until then.
    limiter: Text | None = None
    limiter_evidence: Text | None = None
    # Which of ``probes`` (0-based) the limiter is that of: the judged count's median probe
    # (``harness.capacity.search.Search.judged_probe``). Absent in files of earlier harnesses.
    limiter_probe: Annotated[int, Field(ge=0)] | None = None
    # Where a server shape is set (absent from earlier files): the shape and the answer in
    # whole servers per host (max_accelerators is then max_servers x its accelerators).
    server: ServerRecord | None = None
    max_servers: int | None = None

    @model_serializer(mode="wrap")
    def _limiter_once_named(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        document: dict[str, Any] = handler(self)
        for name in ("limiter", "limiter_evidence", "limiter_probe", "server", "max_servers"):
            if document.get(name) is None:
                document.pop(name, None)
        return document


class CapacityFile(_Section):
    """A whole ``capacity.json``."""

    format: Literal["harness-capacity"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    started: TextOrEmpty = ""
    command: Annotated[list[Text], _null_is(list)] = Field(default_factory=list)
    hosts: Annotated[int, _null_is(lambda: 1)] = 1  # hosts that probed together
    thresholds: Annotated[CapacityThresholds, _null_is(dict)] = Field(
        default_factory=CapacityThresholds
    )
    complete: Flag = False
    stopped: Text | None = None  # why the search stopped before its end
    scenarios: Annotated[list[ScenarioSearch], _null_is(list)] = Field(default_factory=list)


def write_capacity_file(document: CapacityFile, path: Path) -> None:
    """Replace ``path`` with ``document`` in one step (rewritten after every probe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document.model_dump(), indent=2) + "\n"
    with atomic_write(path) as handle:
        handle.write(text.encode())


def read_capacity_file(path: Path) -> CapacityFile:
    """A capacity.json; HarnessError (one line, naming the file and the field) when it is not
    one, is of another format version, or has a field of the wrong shape."""
    document = read_json(path)
    if document is None:
        raise HarnessError(f"{path}: no such file")
    check_format(path, document, FORMAT, FORMAT_VERSION)
    try:
        return CapacityFile.model_validate(document)
    except ValidationError as exc:
        raise HarnessError(validation_line(path, exc)) from None
