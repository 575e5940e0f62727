"""The report's section "What the model saw and learned" (the study's Figures 4-6): a collage
image whole with its mask, then per run a strip of held-out samples with the model's prediction.

Runs that kept no pictures (an incomplete run, an older run folder) are named in one note, with
the reason, rather than given an empty figure each.
"""

from __future__ import annotations

from typing import Any

from harness.report import charts_samples
from harness.report.content import Block, Chart, Note, Section, fmt
from harness.report.runs import Run, by_category

TITLE = "What the model saw and learned"


def _why_none(run: Run) -> str | None:
    """Why a run has no pictures to show; None when it has."""
    entry = run.source.thumbnails
    if entry is None:
        if not run.complete:
            return "the run did not complete"
        return "its run folder keeps no held-out samples (written by an older harness)"
    if entry.get("not_applicable"):
        return f"not applicable: {entry['not_applicable']}"
    if entry.get("unavailable"):
        return f"they could not be kept: {entry['unavailable']}"
    if not entry.get("samples"):
        return "no held-out sample was kept"
    return None


def _miou_text(run: Run) -> str:
    miou, chance = run.value("miou"), run.value("miou_chance")
    if miou is None:
        return "held-out mIoU: not measured"
    count = (run.scenario.get("training") or {}).get("eval_samples")
    over = f" over {count} held-out samples" if isinstance(count, int) else ""
    against = "" if chance is None else f" (always one class: {fmt(chance)})"
    return f"held-out mIoU {fmt(miou)}{over}{against}"


def _strip_caption(run: Run, entry: dict[str, Any]) -> str:
    samples = entry.get("samples") or []
    where = "; ".join(
        f"{int(s.get('number', i)) + 1}: {s.get('where', '?')}" for i, s in enumerate(samples)
    )
    text = (
        f"Run {run.label} ({run.run_id}), {_miou_text(run)}. Held-out samples (the plan's first "
        f"for seed {entry.get('seed', '?')}, the same in every run of this scenario): {where}."
    )
    if entry.get("no_prediction"):
        return text + f" No prediction: {entry['no_prediction']}."
    return text + " Prediction: the trained U-Net's class of each pixel."


def samples_section(runs: list[Run]) -> Section:
    blocks: list[Block] = []
    shown = [run for run in by_category(runs) if _why_none(run) is None]
    collages: set[tuple[str, Any]] = set()
    for run in shown:
        collage = run.source.thumbnails.get("collage")  # type: ignore[union-attr]
        key = (str((run.scenario.get("dataset") or {}).get("path")), (collage or {}).get("where"))
        if not collage or key in collages:
            continue  # one overview per collage image, however many runs read it
        collages.add(key)
        blocks.append(
            Chart(
                f"fig-collage-{len(collages)}",
                "A collage image and its segmentation",
                charts_samples.collage_overview(run),
                f"From run {run.label} ({run.run_id}): {collage.get('where')}, "
                f"{collage.get('width')}×{collage.get('height')} px, one of the images crops are "
                "cut from (as the study's Figure 4). Dashed: the held-out band, never trained "
                "on; red: the held-out samples cut from this image (numbered as below).",
            )
        )
    for index, run in enumerate(shown, start=1):
        blocks.append(
            Chart(
                f"fig-samples-{index}",
                f"Held-out samples of {run.label}",
                charts_samples.held_out_strip(run),
                _strip_caption(run, run.source.thumbnails or {}),
            )
        )
    missing = [(run, _why_none(run)) for run in runs if _why_none(run) is not None]
    if missing:
        blocks.append(
            Note(
                "info",
                "No held-out samples to show for "
                + "; ".join(f"{run.label}: {why}" for run, why in missing)
                + ".",
            )
        )
    return Section(
        "samples",
        TITLE,
        "Held-out crops no run trained on, their true segmentation and the trained model's "
        "prediction (the study's Figures 4-6); a class has one colour in every picture.",
        blocks,
    )
