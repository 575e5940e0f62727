"""GPUs through NVML (nvidia-ml-py, imported only when a GPU collector is made).

Long format: one row per GPU per sample, with the NVML device index in column ``gpu`` (NVML's
order, which CUDA_VISIBLE_DEVICES does not change). ``indices`` and ``gpus`` list the GPUs
sampled and their names; a GPU NVML will not hand out (a lost one, say) is left out and named in
``query_errors``. Columns: t, gpu, gpu_util_pct, mem_util_pct (memory controller busy),
mem_used_MiB, pcie_rx_MBps, pcie_tx_MBps, sm_clock_MHz, power_W, dec_util_pct (NVDEC), and,
only when some GPU supports GPM (Hopper and newer), sm_util_pct and sm_occupancy_pct from the
GPU performance monitor between two samples.

A query a GPU answers with NotSupported (or that the driver lacks) is NaN from then on and never
asked again; any other NVML error gives NaN for that sample only and is kept in ``query_errors``.

PCIe throughput: NVML measures it by counting bytes over 20 ms inside the call, so each query
blocks for about that long (RX and TX are two queries). When those calls for all GPUs would take
more than half the sampling period they run only every k-th tick (``pcie_every``); the other
rows hold NaN, and the window means use the samples taken. NVML's "KB/s" is read as KiB/s
(1024 bytes), as nvitop reads it; MB/s is 10**6 bytes per second.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from harness.collect import CollectorContext
from harness.collect.sampler import Collector
from harness.stats import Direction, metric, window_mean

MiB = 2**20
# GPM derives its metrics from two snapshots; NVIDIA's samples space them at least 100 ms apart.
GPM_MIN_INTERVAL_S = 0.09

# column, summary unit, direction
ColumnSpec = tuple[str, str, Direction]
FIELDS: tuple[ColumnSpec, ...] = (
    ("gpu_util_pct", "%", "higher"),
    ("mem_util_pct", "%", "context"),
    ("mem_used_MiB", "MiB", "context"),
    ("pcie_rx_MBps", "MB/s", "context"),
    ("pcie_tx_MBps", "MB/s", "context"),
    ("sm_clock_MHz", "MHz", "context"),
    ("power_W", "W", "context"),
    ("dec_util_pct", "%", "context"),
)
GPM_FIELDS: tuple[ColumnSpec, ...] = (
    ("sm_util_pct", "%", "higher"),
    ("sm_occupancy_pct", "%", "context"),
)
NAN = math.nan


def _nvml_reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return f"not available: {text}"


class GpuCollector(Collector):
    name = "gpu"

    def __init__(self, *, rate_hz: float, t0: float) -> None:
        super().__init__(rate_hz=rate_hz, t0=t0, columns=("t", "gpu"))
        self.indices: list[int] = []  # NVML index of each GPU sampled
        self.gpus: list[str] = []  # and its name
        self.gpm: list[bool] = []
        self.fields: tuple[ColumnSpec, ...] = ()
        self.query_errors: dict[str, str] = {}
        self.pcie_every = 1
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._unsupported: list[set[str]] = []
        self._gpm_state: list[list[Any]] = []  # per GPU: [reference sample, spare sample, time]
        self._tick = 0
        self._pcie_cost = 0.0
        try:
            import pynvml
        except ImportError as err:
            self.unavailable = f"not available: nvidia-ml-py is not installed ({err})"
            return
        try:
            pynvml.nvmlInit()
        except Exception as err:  # NVMLError (no library, no driver) or OSError from ctypes
            self.unavailable = _nvml_reason(err)
            return
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as err:
            self._shutdown()
            self.unavailable = _nvml_reason(err)
            return
        for index in range(count):
            try:  # a GPU this process may not use (or a lost one) is left out, not fatal
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = _text(pynvml.nvmlDeviceGetName(handle))
            except pynvml.NVMLError as err:
                self.query_errors[f"gpu {index}"] = str(err)
                continue
            self.indices.append(index)
            self.gpus.append(name)
            self._handles.append(handle)
        if not self._handles:
            self._shutdown()
            problems = "; ".join(f"{key}: {text}" for key, text in self.query_errors.items())
            self.unavailable = "not available: NVML found no usable GPU" + (
                f" ({problems})" if problems else ""
            )
            return
        self._unsupported = [set() for _ in self._handles]
        self.gpm = [self._gpm_supported(h) for h in self._handles]
        fields = FIELDS + (GPM_FIELDS if any(self.gpm) else ())
        self.fields = fields
        self.columns = ("t", "gpu", *(name for name, _, _ in fields))
        self._gpm_state = [[None, None, NAN] for _ in self._handles]

    # ------------------------------------------------------------------ NVML
    def _gpm_supported(self, handle: Any) -> bool:
        nvml = self._nvml
        try:
            return bool(nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except nvml.NVMLError:  # older driver or GPU: no GPM
            return False

    def _is_unsupported(self, err: Any) -> bool:
        nvml = self._nvml
        return getattr(err, "value", None) in (
            nvml.NVML_ERROR_NOT_SUPPORTED,
            nvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        )

    def _query(self, gpu: int, key: str, read: Callable[..., Any], *args: Any) -> Any:
        """``read(*args)``, or None when the GPU does not answer it (now or ever)."""
        if key in self._unsupported[gpu]:
            return None
        try:
            return read(*args)
        except self._nvml.NVMLError as err:
            if self._is_unsupported(err):
                self._unsupported[gpu].add(key)
            else:
                self.query_errors[key] = str(err)
            return None

    def _sample(self) -> None:
        nvml = self._nvml
        t = self._now()
        gpm = len(self.columns) > 2 + len(FIELDS)
        rows = []
        # GPM snapshots first, so that their spacing follows the schedule; the slow PCIe
        # queries last, so that the others are read close to ``t``
        for i, handle in enumerate(self._handles):
            gpm_values = self._gpm_values(i, handle) if gpm else ()
            rows.append([t, self.indices[i], *(NAN for _ in FIELDS), *gpm_values])
        for i, (row, handle) in enumerate(zip(rows, self._handles, strict=True)):
            query = functools.partial(self._query, i)
            util = query("utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = query("memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            clock = query("sm_clock", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
            power = query("power", nvml.nvmlDeviceGetPowerUsage, handle)
            decoder = query("decoder", nvml.nvmlDeviceGetDecoderUtilization, handle)
            row[2] = _num(util, lambda u: u.gpu)
            row[3] = _num(util, lambda u: u.memory)
            row[4] = _num(memory, lambda m: m.used / MiB)
            row[7] = _num(clock, float)
            row[8] = _num(power, lambda mw: mw / 1000.0)  # mW
            row[9] = _num(decoder, lambda d: d[0])  # [utilisation, sampling period in us]
        self._tick += 1
        if (self._tick - 1) % self.pcie_every == 0:
            began = time.monotonic()
            get = nvml.nvmlDeviceGetPcieThroughput
            for i, (row, handle) in enumerate(zip(rows, self._handles, strict=True)):
                rx = self._query(i, "pcie_rx", get, handle, nvml.NVML_PCIE_UTIL_RX_BYTES)
                tx = self._query(i, "pcie_tx", get, handle, nvml.NVML_PCIE_UTIL_TX_BYTES)
                row[5] = _num(rx, lambda kib: kib * 1024 / 1e6)
                row[6] = _num(tx, lambda kib: kib * 1024 / 1e6)
            self._adapt_pcie(time.monotonic() - began)
        for row in rows:
            self._record(row)

    def _adapt_pcie(self, elapsed: float) -> None:
        """Keep the blocking PCIe queries within half the period (see the module notes)."""
        self._pcie_cost = elapsed if self._pcie_cost == 0 else 0.7 * self._pcie_cost + 0.3 * elapsed
        self.pcie_every = max(1, math.ceil(self._pcie_cost / (0.5 * self.period)))

    def _gpm_values(self, gpu: int, handle: Any) -> list[float]:
        """SM utilisation and occupancy between the reference GPM snapshot and a new one."""
        nvml = self._nvml
        if not self.gpm[gpu] or "gpm" in self._unsupported[gpu]:
            return [NAN, NAN]
        state = self._gpm_state[gpu]
        try:
            if state[0] is None:
                state[0], state[1] = nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()
                nvml.nvmlGpmSampleGet(handle, state[0])
                state[2] = time.monotonic()
                return [NAN, NAN]
            now = time.monotonic()
            if now - state[2] < GPM_MIN_INTERVAL_S:
                return [NAN, NAN]
            nvml.nvmlGpmSampleGet(handle, state[1])
            query = nvml.c_nvmlGpmMetricsGet_t()
            query.version = nvml.NVML_GPM_METRICS_GET_VERSION
            query.numMetrics = 2
            query.sample1, query.sample2 = state[0], state[1]
            query.metrics[0].metricId = nvml.NVML_GPM_METRIC_SM_UTIL
            query.metrics[1].metricId = nvml.NVML_GPM_METRIC_SM_OCCUPANCY
            nvml.nvmlGpmMetricsGet(query)
            state[0], state[1], state[2] = state[1], state[0], now  # the new one is the reference
            return [
                float(query.metrics[j].value)
                if query.metrics[j].nvmlReturn == nvml.NVML_SUCCESS
                else NAN
                for j in range(2)
            ]
        except nvml.NVMLError as err:
            if self._is_unsupported(err):
                self._unsupported[gpu].add("gpm")
            else:
                self.query_errors["gpm"] = str(err)
            return [NAN, NAN]

    def _close(self) -> None:
        if self._nvml is None:
            return
        for state in self._gpm_state:
            for sample in state[:2]:
                if sample is not None:
                    with contextlib.suppress(self._nvml.NVMLError):
                        self._nvml.nvmlGpmSampleFree(sample)
            state[0] = state[1] = None
        self._shutdown()

    def _shutdown(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()

    # ---------------------------------------------------------------- results
    def _build_frame(self, raw: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(raw, columns=list(self.columns))
        frame["gpu"] = frame["gpu"].astype(np.int64)
        return frame

    def summary(self, start: float, end: float) -> dict[str, dict]:
        """Per GPU ``<column>[<index>]``: the mean over the window of each column."""
        if self.unavailable is not None:
            return {}
        frame = self.frame()
        found: dict[str, dict] = {}
        for position, index in enumerate(self.indices):
            rows = frame[frame["gpu"] == index]
            t = rows["t"].to_numpy()
            for name, unit, direction in self.fields:
                if name in ("sm_util_pct", "sm_occupancy_pct") and not self.gpm[position]:
                    continue
                value = window_mean(t, rows[name].to_numpy(), start, end)
                found[f"{name}[{index}]"] = metric(value, unit, direction)
        return found


def _num(value: Any, convert: Callable[[Any], float]) -> float:
    return NAN if value is None else float(convert(value))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def collector(context: CollectorContext) -> GpuCollector:
    """The registry's entry (``harness.registry.COLLECTORS``: "gpu")."""
    return GpuCollector(rate_hz=context.rate_hz, t0=context.t0)
