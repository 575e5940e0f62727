"""The report as one :class:`~harness.report.content.Document`: its title, the notes every reader
must see first (incomplete runs, no GPU), and its sections in order, numbered. Capacity results
(``capacity.json``) add a Capacity section after the study's Figure 7; given alone, without run
folders, they make a report of that section only.

Both writers render this one document, so the HTML and the PDF cannot disagree. The sections are
built in :mod:`harness.report.sections_tables` (runs, metrics, checks, environment),
:mod:`harness.report.sections_figures` (the charts and the tables beside them) and
:mod:`harness.report.sections_samples` (the pictures of held-out samples); the figures are drawn
here, once, and shared by both writers. A new block belongs in its section's list of blocks: both
writers lay out whatever a section holds.
"""

from __future__ import annotations

import time

import harness
from harness.report.capacity_data import CapacityResults
from harness.report.content import Document, Note, Section
from harness.report.runs import Run
from harness.report.sections_capacity import capacity_section
from harness.report.sections_figures import (
    cpu_section,
    figure7_section,
    footprint_section,
    gpu_section,
    latency_section,
    loss_section,
    read_section,
    server_section,
    stall_section,
)
from harness.report.sections_samples import samples_section
from harness.report.sections_tables import (
    checks_section,
    environment_section,
    runs_section,
    summary_section,
)


def build_document(runs: list[Run], capacity: list[CapacityResults] | None = None) -> Document:
    """Every section of the report for these runs (and capacity results); figures are built
    here, once."""
    capacity = capacity or []
    scenarios = list(dict.fromkeys(run.scenario_name for run in runs))
    machines = list(dict.fromkeys(run.machine for run in runs))
    subtitle = (
        f"{len(runs)} run{'s' * (len(runs) != 1)} of {len(scenarios)} scenario"
        f"{'s' * (len(scenarios) != 1)} on {len(machines)} machine{'s' * (len(machines) != 1)}"
    )
    searched = sum(len(result.scenarios) for result in capacity)
    if capacity and not runs:
        subtitle = f"capacity of {searched} scenario{'s' * (searched != 1)}"
    elif capacity:
        subtitle += f"; capacity of {searched} scenario{'s' * (searched != 1)}"
    notes = [Note("error", f"{run.label}: {text}") for run in runs for text in run.notes]
    gpu_runs = [run for run in runs if run.gpu_utils()]
    if runs and not gpu_runs:
        notes.append(
            Note(
                "info",
                "No GPU was sampled in any run: where the study shows GPU utilisation, this "
                "report shows the loop's busy % (compute time / wall time), labelled as such.",
            )
        )
    if runs or not capacity:
        sections = _run_sections(runs)
        if capacity:
            sections.insert(3, capacity_section(capacity, runs))  # after the study's Figure 7
    else:
        notes.append(
            Note(
                "info",
                "Only capacity results were given: give the probes' run folders too (the run "
                "column of each probe table) for the per-run sections.",
            )
        )
        sections = [capacity_section(capacity, runs)]
    for number, section in enumerate(sections, start=1):
        section.number = number
    return Document(
        title="Storage-to-GPU throughput report",
        subtitle=subtitle,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        harness_version=harness.__version__,
        notes=notes,
        sections=sections,
    )


def _run_sections(runs: list[Run]) -> list[Section]:
    # The study's answer first (utilisation, what stalls it, what it costs in storage), then the
    # series over time and the latencies behind it, then the evidence that training was real.
    server = server_section(runs)  # only when some run scraped a server's endpoint
    return [
        runs_section(runs),
        summary_section(runs),
        figure7_section(runs),
        stall_section(runs),
        gpu_section(runs),
        footprint_section(runs),
        read_section(runs),
        *([server] if server is not None else []),
        cpu_section(runs),
        latency_section(runs),
        loss_section(runs),
        samples_section(runs),
        checks_section(runs),
        environment_section(runs),
    ]
