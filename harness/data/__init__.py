"""Datasets on the storage under test: generators (collage, video), bring-your-own, frame cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.scenario import Scenario

if TYPE_CHECKING:
    from harness.data.manifest import DatasetManifest
    from harness.data.sizing import Clients


def prepare_datasets(
    scenarios: Sequence[Scenario], *, force: bool = False, clients: Clients | None = None
) -> list[DatasetManifest]:
    """Generate, or index when brought by the user, the dataset of every scenario (once per path:
    the decoded and cached video scenarios share theirs). Returns the manifests. ``clients``:
    whose RAM ``size: 5x-ram`` counts (default: this machine's)."""
    from harness.data.byo import index_dataset
    from harness.data.generate import generate_dataset

    manifests = []
    done: set[str] = set()
    for scenario in scenarios:
        dataset = scenario.dataset
        if dataset.path in done:
            continue
        done.add(dataset.path)
        if dataset.generate is not None:
            manifests.append(generate_dataset(dataset, force=force, clients=clients))
        else:
            manifests.append(index_dataset(dataset, min_side=scenario.pipeline.crop, force=force))
    return manifests
