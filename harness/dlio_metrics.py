"""A run's figures by DLIO's definitions (dlio_benchmark 2.0.0, the release on PyPI that MLPerf
Storage runs and ``../shared/tools/dlio_peer.sh`` installs): the ``dlio`` block of summary.json,
which the DLIO export and the report show. Pure: the run's tables in, a typed block out.

What DLIO 2.0.0 does (``dlio_benchmark/utils/statscounter.py`` and ``main.py`` at tag v2.0.0;
one DLIO block of steps = one epoch without checkpoints = one harness run):

- per step it records ``proc`` (from before asking the loader for the batch to the end of the
  compute: load + compute, not the barrier after it) and ``compute``, the **nominal** computation
  time it drew and then slept (``main.py`` 265-273, ``statscounter.py`` 316-325);
- ``compute_metrics_train`` (``statscounter.py`` 327-337): AU = sum(compute[1:]) / (block wall -
  proc[0]) x 100, so the first step's load and compute are left out of AU; throughput =
  len(steps) x batch / block wall, the first step (the warm-up) **kept**;
- ``end_train`` (206-217): an epoch's figures are its blocks' weighted by steps; ``end_run``
  (136-154): AU is the mean over ranks, throughput the **sum** over ranks; the summary's
  ``train_au_percentage`` and ``train_throughput_samples_per_second`` list one value per epoch
  (no epoch left out), their mean and stdev (``np.std``) follow, and
  ``train_io_mean_MB_per_second`` = mean samples/s x ``record_length`` / 1024 / 1024: MiB/s of
  the nominal record length, not bytes read.

DLIO after 2.0.0 (v2.0.1 and main, whose setup.py still says 2.0.0) changed two of these: the
compute time is the measured one around the sleep (``statscounter.py`` 389-400), and
``metric_exclude_start_steps`` (default 1) / ``metric_exclude_end_steps`` (default 0) also leave
those steps' wall out of the throughput, which counts len(steps) - 2 (402-412). The block follows
2.0.0 and names it in ``definition``.

Here: a rank's block wall runs from its first step's start (the wait for the first batch included)
to its last step's end (the last barrier included, as DLIO's ``end_block`` comes after it,
``main.py`` 274-292); the loader's start before the first step is not in it (DLIO counts the
DataLoader's start in step 1). The nominal compute time is the step table's ``compute_nominal_s``
(emulated runs: the time the profile drew) where every step has one, else the measured ``compute_s``
(real training: nominal = measured); ``au_source`` says which. Every step counts, the harness's
warm-up steps included (DLIO has none): only step 1 is left out of AU, as DLIO does. A step's
samples are its batch (DLIO: ``batch_size`` per step). The record length is the mean bytes the
pipeline asked for per consumed sample (``samples.parquet``), the size a DLIO config would give for
these samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import results
from harness.results.summary_file import DlioBlock

DEFINITION = "dlio_benchmark 2.0.0"
EXCLUDE_START_STEPS = 1  # DLIO 2.0.0 leaves the first step of each block out of AU
NOMINAL_COLUMN = "compute_nominal_s"  # the compute time an emulated step drew
MiB = 2**20


def _rank_figures(steps: pd.DataFrame, compute: str) -> tuple[float | None, float]:
    """One rank's (AU %, samples/s) by DLIO 2.0.0's ``compute_metrics_train``."""
    steps = steps.sort_values("step")
    wall = float(steps["t_end"].iloc[-1] - steps["t_start"].iloc[0])
    first_proc = float(steps["wait_s"].iloc[0] + steps["compute_s"].iloc[0])
    rate = float(steps["samples"].sum()) / wall if wall > 0 else float("nan")
    if len(steps) <= EXCLUDE_START_STEPS or wall - first_proc <= 0:
        return None, rate
    computed = float(steps[compute].iloc[EXCLUDE_START_STEPS:].sum())
    return 100 * computed / (wall - first_proc), rate


def _record_length(samples: pd.DataFrame) -> float | None:
    """Mean bytes asked for per sample; None when the backend does not count them."""
    if samples is None or not len(samples) or "requested_bytes" not in samples:
        return None
    mean = samples["requested_bytes"].mean()  # NaN rows (not measured) left out
    return None if pd.isna(mean) else float(mean)


def dlio_block(steps: pd.DataFrame, samples: pd.DataFrame) -> DlioBlock | None:
    """The run's DLIO block from its step and sample tables (every rank's); None without steps."""
    if steps is None or not len(steps):
        return None
    nominal = NOMINAL_COLUMN in steps and bool(steps[NOMINAL_COLUMN].notna().all())
    compute = NOMINAL_COLUMN if nominal else "compute_s"
    figures = [_rank_figures(group, compute) for _, group in steps.groupby("rank")]
    au = [value for value, _ in figures if value is not None]
    rates = [rate for _, rate in figures]
    throughput = float(np.sum(rates)) if all(np.isfinite(rates)) else None
    record = _record_length(samples)
    return DlioBlock(
        definition=DEFINITION,
        au_pct=float(np.mean(au)) if len(au) == len(figures) else None,
        au_source="nominal" if nominal else "measured",
        train_throughput_samples_per_second=throughput,
        train_io_MB_per_second=None
        if throughput is None or record is None
        else throughput * record / MiB,
        record_length=record,
        num_accelerators=len(figures),
        steps=int(steps.groupby("rank").size().max()),
        metric_exclude_start_steps=EXCLUDE_START_STEPS,
    )


def run_dlio_block(run: results.RunFolder) -> DlioBlock | None:
    """A run's DLIO block: its summary's, or (runs written before the block) the same
    computation on the tables it left; None when it has neither."""
    if run.summary is not None and run.summary.dlio is not None:
        return run.summary.dlio
    steps, samples = run.table("steps"), run.table("samples")
    if steps is None or samples is None:
        return None
    return dlio_block(steps, samples)
