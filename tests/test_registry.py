"""The registries of extension points (``harness.registry``) and the settings a backend ignores.

The registries are read by the scenario schema and ``harness --help``: reading names must import
no entry, and an entry whose package is missing must not stop the others from loading. A pipeline
setting a backend does not act on is a warning naming the setting and the backend, from
``harness validate`` too (exit code 0).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import registry
from harness.pipeline import BACKEND_SETTINGS, ignored_settings, reader_count
from harness.scenario import Scenario


def scenario(
    pipeline: dict[str, Any], *, image_format: str = "npy", video: str | None = None
) -> Scenario:
    """A small collage scenario (npy by default), or a video one in mode ``video``."""
    if video is None:
        dataset: dict[str, Any] = {
            "kind": "image_collage",
            "path": "x",
            "generate": {"images": 1, "width": 160, "height": 120, "format": image_format},
        }
    else:
        dataset = {
            "kind": "video",
            "path": "x",
            "generate": {"videos": 1, "frames": 30, "width": 160, "height": 120},
        }
        pipeline = {"mode": video, **pipeline}
        if video == "cached":
            pipeline["cache"] = {"path": "y"}
    return Scenario.model_validate(
        {
            "name": "s",
            "dataset": dataset,
            "pipeline": {"batch_size": 4, "crop": 48, **pipeline},
            "training": {"steps": 10, "model": {"width": 8, "depth": 2}},
        }
    )


def test_reading_the_registry_imports_no_entry() -> None:
    code = (
        "import sys, harness.registry, harness.scenario\n"
        "print(sorted(m for m in sys.modules if m.startswith('harness')"
        " and not m.startswith('harness.scenario')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the registry is a leaf and the schema takes its names from it: no backend, no collector
    # (harness.text, the names' check, is a ground-floor leaf like harness.errors;
    # harness.collect.promseries, the Prometheus selectors' syntax the schema checks, is pure:
    # its package's __init__ imports no collector)
    assert done.stdout.strip() == (
        "['harness', 'harness.collect', 'harness.collect.promseries', 'harness.errors', "
        "'harness.registry', 'harness.text']"
    )


def test_checking_a_scenario_and_reading_results_import_no_torch(tmp_path: Path) -> None:
    """``harness validate`` asks the torch backend which settings it ignores (the shipped cached
    scenario sets some), ``report`` and ``compare`` read run folders: none imports torch (a CI's
    pre-check, and every such CLI call of the tests, paid 0.8 s for it)."""
    repo = Path(__file__).parents[1]
    scenario = repo / "scenarios" / "quick" / "video_cached.yaml"
    golden = repo / "tests" / "data" / "golden" / "collage"
    calls = [
        ["validate", str(scenario)],
        ["report", str(golden), "--out", str(tmp_path / "report")],
        ["compare", str(golden), str(golden)],
    ]
    code = (
        "import sys\nfrom harness.cli import main\n"
        f"codes = [main(call) for call in {calls!r}]\n"
        "print(*codes, 'torch' in sys.modules, 'harness.pipeline.torch_backend' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-5:] == ["0", "0", "0", "False", "True"], done.stdout + done.stderr


def test_a_missing_optional_module_leaves_the_others_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails
    monkeypatch.delitem(sys.modules, "harness.export.mlflow_exporter", raising=False)
    with pytest.raises(ImportError):
        registry.EXPORTERS.load("mlflow")
    assert registry.EXPORTERS.load("prometheus").TEXT is True
    assert registry.EXPORTERS.load("dlio").TEXT is True
    missing = registry.Registry("thing", {"gone": "harness.no_such_module", "here": "json"})
    with pytest.raises(ImportError):
        missing.load("gone")
    assert missing.load("here").dumps([]) == "[]"
    with pytest.raises(KeyError):
        missing.load("unknown")


def test_every_entry_has_its_protocol_s_members() -> None:
    members = [
        (registry.BACKENDS, ("unavailable", "check_scenario", "batches", "ignored_settings")),
        (registry.COLLECTORS, ("collector",)),
        (registry.EXPORTERS, ("TEXT", "export")),
        (registry.COMMANDS, ("HELP", "configure", "run")),
    ]
    for entries, names in members:
        for name in entries:
            if entries is registry.EXPORTERS and name in ("mlflow", "clearml"):
                continue  # optional packages: their modules import them at the top
            module = entries.load(name)
            assert all(hasattr(module, member) for member in names), (entries.kind, name)
    assert registry.COLLECTOR_NAMES == ("gpu", "io", "cpu", "prometheus", "latency")
    assert registry.DEFAULT_COLLECTORS == ("gpu", "io", "cpu", "latency")  # prometheus needs a URL


def test_read_threads_on_npy_crops_is_a_warning_naming_the_backend() -> None:
    assert ignored_settings(scenario({"read_threads": 4, "workers": 2})) == [
        "pipeline.read_threads: ignored by the torch backend (npy crops are read through a "
        "memory map, not as whole files)"
    ]
    assert reader_count(scenario({"read_threads": 4, "workers": 2})) == 2


def test_read_threads_on_whole_file_reads_is_honoured() -> None:
    png = scenario({"read_threads": 4, "workers": 2}, image_format="png")
    assert ignored_settings(png) == []
    assert reader_count(png) == 8
    cached = scenario({"read_threads": 4, "workers": 0}, video="cached")
    assert ignored_settings(cached) == []
    assert reader_count(cached) == 4  # no workers: the training process reads, with its threads


def test_other_backends_name_what_they_ignore() -> None:
    dali = scenario({"backend": "dali", "read_threads": 2, "shuffle": False}, image_format="png")
    assert ignored_settings(dali) == [
        "pipeline.shuffle: ignored by the dali backend (DALI's readers always shuffle)",
        "pipeline.read_threads: ignored by the dali backend (it reads through DALI's own readers)",
    ]
    nvdec = scenario({"backend": "nvdec", "decoder_threads": 2}, video="decoded")
    assert [line.split(":")[0] for line in ignored_settings(nvdec)] == ["pipeline.decoder_threads"]
    decoded = scenario({"read_threads": 3, "sequence_length": 4}, video="decoded")
    assert [line.split(":")[0] for line in ignored_settings(decoded)] == ["pipeline.read_threads"]
    # defaults are never warned about, whatever the backend
    assert ignored_settings(scenario({"backend": "dali"}, image_format="png")) == []
    assert set(BACKEND_SETTINGS) <= set(type(dali.pipeline).model_fields)


def test_validate_warns_on_stderr_and_exits_0(cli: Any, write_scenario: Any) -> None:
    document = scenario({"read_threads": 4}).model_dump(mode="json", exclude_defaults=True)
    path = write_scenario(document)
    result = cli("validate", str(path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"ok {path}: s (image_collage)")
    assert result.stderr == (
        f"warning: {path}: pipeline.read_threads: ignored by the torch backend (npy crops are "
        "read through a memory map, not as whole files)\n"
    )


def test_run_warns_before_it_starts(cli: Any, write_scenario: Any, tmp_path: Path) -> None:
    # the same warning from `harness run`, before anything is read (here: no dataset, exit 2)
    document = scenario({"read_threads": 4}).model_dump(mode="json", exclude_defaults=True)
    document["dataset"]["path"] = str(tmp_path / "absent")
    path = write_scenario(document)
    result = cli("run", str(path), "--results", str(tmp_path / "results"))
    lines = result.stderr.splitlines()
    assert result.returncode == 2
    assert lines[0] == (
        f"warning: {path}: pipeline.read_threads: ignored by the torch backend (npy crops are "
        "read through a memory map, not as whole files)"
    )
    assert "no dataset" in lines[-1]


def test_whole_file_scenario_validates_without_warning(cli: Any, write_scenario: Any) -> None:
    document = scenario({"read_threads": 4}, image_format="png").model_dump(
        mode="json", exclude_defaults=True
    )
    result = cli("validate", str(write_scenario(document)))
    assert (result.returncode, result.stderr) == (0, "")


def test_the_torch_backend_module_is_named_for_its_backend() -> None:
    assert registry.BACKENDS["torch"] == "harness.pipeline.torch_backend"
    assert not (Path(__file__).parents[1] / "harness" / "pipeline" / "loader.py").exists()
