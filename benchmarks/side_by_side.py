"""Pure helpers of the side-by-side benchmarks (bench_mlperf.py, bench_preprocess.py): a table of
two tools' figures with their ratio, and the targets' judgement. No I/O here, so that the tests
(tests/test_bench_side_by_side.py) check them without running anything."""

from __future__ import annotations

import math
from dataclasses import dataclass

NAN = float("nan")


@dataclass(frozen=True)
class Target:
    """One target: met (True), missed (False) or not judged (None, ``why`` says so)."""

    name: str
    met: bool | None
    found: str  # the figures it was judged on, e.g. "97.1 vs 96.0"
    why: str = ""  # why it was not judged

    def line(self) -> str:
        verdict = {True: "ok", False: "MISSED", None: f"not judged: {self.why}"}[self.met]
        return f"  {self.name:52s} {self.found:>22s}  {verdict}"


def number(x: float, digits: int = 1) -> str:
    """A figure as the tables print it; NaN (not measured, not applicable) as a dash."""
    return "-" if x != x else f"{x:.{digits}f}"


def ratio(ours: float, theirs: float) -> float:
    """ours / theirs; NaN where either is missing or theirs is 0."""
    if ours != ours or theirs != theirs or theirs == 0:
        return NAN
    return ours / theirs


def table(columns: list[str], rows: list[list[str | float]], digits: int = 1) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, numbers
    with ``digits`` decimals (NaN as a dash)."""
    cells = [[c if isinstance(c, str) else number(c, digits) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [columns, *cells]) for i in range(len(columns))]
    lines = []
    for row in [columns, *cells]:
        first, *rest = row
        lines.append(
            "  "
            + "  ".join(
                [
                    f"{first:<{widths[0]}s}",
                    *(f"{c:>{w}s}" for c, w in zip(rest, widths[1:], strict=True)),
                ]
            )
        )
    return "\n".join(lines)


def missed(targets: list[Target]) -> int:
    return sum(target.met is False for target in targets)


# --- bench_mlperf.py: the harness beside DLIO ---------------------------------------------------

AU_POINTS = 2.0  # the harness's AU (DLIO's definition) within this many points of DLIO's
CLIENT_BOUND_AU = 100.0 - AU_POINTS  # DLIO warm (files in memory) below this: its client limits


def mlperf_targets(harness_au: float, harness_sps: float, dlio_au: float, dlio_sps: float,
                   dlio_warm_au: float) -> list[Target]:  # fmt: skip
    """AU by DLIO's definition within 2 points of DLIO's, judged only where DLIO's own client is
    not the bottleneck (with its files in the page cache, so the storage out of the way, DLIO
    still keeps its accelerators at least 98 % busy; NaN: no warm run, judged); samples/s at
    least DLIO's."""
    client_bound = dlio_warm_au == dlio_warm_au and dlio_warm_au < CLIENT_BOUND_AU
    au_met = None if client_bound else abs(harness_au - dlio_au) <= AU_POINTS
    if harness_au != harness_au or dlio_au != dlio_au:
        au_met = False
    return [
        Target(
            f"AU (DLIO's definition) within {AU_POINTS:g} points of DLIO's",
            au_met,
            f"{number(harness_au)} vs {number(dlio_au)}",
            f"DLIO's client is the bottleneck (AU {number(dlio_warm_au)} % with its files in "
            "memory)"
            if client_bound
            else "",
        ),
        Target(
            "samples/s at least DLIO's",
            harness_sps >= dlio_sps,
            f"{number(harness_sps)} vs {number(dlio_sps)}",
        ),
    ]


# --- bench_preprocess.py: the emulated client beside the real one -------------------------------

BUSY_POINTS = 3.0  # busy % of the emulated client within this many points of the real one's
READ_REL = 0.05  # read MB/s within this share of the real one's
CPU_SHARE = 0.2  # the emulated client's CPU per sample at most this share of the real one's


def cpu_per_sample(cpu_pct: float, samples_per_s: float) -> float:
    """The run's CPU per sample in core-ms: (% of a core / 100) / (samples/s) x 1000."""
    if samples_per_s != samples_per_s or samples_per_s <= 0:
        return NAN
    return cpu_pct / 100 / samples_per_s * 1e3


def preprocess_targets(real: dict[str, float], emulated: dict[str, float]) -> list[Target]:
    """Each dict holds ``busy``, ``read_MBps`` and ``pipeline_ms_per_sample`` of one run: the CPU
    per sample of its data workers (the client's preprocessing, what the emulation replaces;
    the ranks' loops and the collectors cost the same in both and are printed beside it)."""
    read_gap = abs(ratio(emulated["read_MBps"], real["read_MBps"]) - 1)
    cpu_share = ratio(emulated["pipeline_ms_per_sample"], real["pipeline_ms_per_sample"])
    return [
        Target(
            f"busy % within {BUSY_POINTS:g} points",
            abs(emulated["busy"] - real["busy"]) <= BUSY_POINTS,
            f"{number(emulated['busy'])} vs {number(real['busy'])}",
        ),
        Target(
            f"read MB/s within {READ_REL:.0%}",
            read_gap <= READ_REL,  # False for NaN
            f"{number(emulated['read_MBps'])} vs {number(real['read_MBps'])}",
        ),
        Target(
            f"data workers' CPU per sample at most {CPU_SHARE:g} of the real one's",
            cpu_share <= CPU_SHARE,
            f"{number(emulated['pipeline_ms_per_sample'], 2)} vs "
            f"{number(real['pipeline_ms_per_sample'], 2)} ms",
        ),
    ]


def capacity_by_hand(cap_MBps: float, sample_bytes: float, batch: int, step_s: float) -> int:
    """Whole accelerators a read cap feeds: each, never waiting, reads batch / step samples a
    second of ``sample_bytes`` (MB = 10^6 B)."""
    demand_MBps = sample_bytes * batch / step_s / 1e6
    return math.floor(cap_MBps / demand_MBps)
