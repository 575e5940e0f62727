"""Scenarios: the typed, frozen model (``model``), safe YAML reading (``reading``), loading with
``-o`` overrides and one-line errors (``loading``), the checks against the machine that runs
them (``machine``), and the field reference generated from the schema (``reference``).

A scenario file describes one experiment: the dataset (generated or brought by the user), the input
pipeline, the training loop, the collectors and the pass/fail thresholds. A suite file lists
scenario files.
"""

from harness.scenario.capacity_settings import CapacitySettings
from harness.scenario.loading import (
    apply_overrides,
    is_suite,
    load_scenario,
    load_scenarios,
    load_suite,
    parse_override,
    scenario_json_schema,
    scenario_to_yaml,
    suite_json_schema,
    validate_model,
)
from harness.scenario.model import (
    CollageGenerate,
    Collectors,
    Dataset,
    FrameCache,
    ImageCollageDataset,
    LoadedScenario,
    Model,
    Pipeline,
    RecordsDataset,
    RecordsGenerate,
    Scenario,
    Suite,
    Thresholds,
    Training,
    UNetConfig,
    VideoDataset,
    VideoGenerate,
)
from harness.scenario.reading import Document, read_yaml
from harness.scenario.reference import field_reference_markdown

__all__ = [
    "CapacitySettings",
    "CollageGenerate",
    "Collectors",
    "Dataset",
    "Document",
    "FrameCache",
    "ImageCollageDataset",
    "LoadedScenario",
    "Model",
    "Pipeline",
    "RecordsDataset",
    "RecordsGenerate",
    "Scenario",
    "Suite",
    "Thresholds",
    "Training",
    "UNetConfig",
    "VideoDataset",
    "VideoGenerate",
    "apply_overrides",
    "field_reference_markdown",
    "is_suite",
    "load_scenario",
    "load_scenarios",
    "load_suite",
    "parse_override",
    "read_yaml",
    "scenario_json_schema",
    "scenario_to_yaml",
    "suite_json_schema",
    "validate_model",
]
