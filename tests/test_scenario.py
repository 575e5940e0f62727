"""Scenario validation through the real CLI: shipped files pass, bad input fails one line each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_collage_scenario, tiny_video_scenario

from harness.errors import ScenarioError
from harness.scenario import apply_overrides, load_scenario

SHIPPED = sorted((REPO / "scenarios").glob("*/*.yaml"))


def test_every_shipped_scenario_and_suite_is_valid(cli) -> None:
    names = {p.relative_to(REPO / "scenarios").as_posix() for p in SHIPPED}
    for scale in ("quick", "paper"):
        for name in ("image_collage", "video_decoded", "video_cached", "suite"):
            assert f"{scale}/{name}.yaml" in names
    result = cli("validate", *map(str, SHIPPED))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") >= 12  # 6 scenarios, each also listed by its suite


def test_paper_scale_matches_the_study() -> None:
    collage = load_scenario(REPO / "scenarios/paper/image_collage.yaml").scenario
    generate = collage.dataset.generate
    assert generate.images == 1300
    assert 75e6 < generate.image_bytes() < 77e6  # ~76 MB each, ~99 GB in all
    assert collage.training.steps == 2000
    video = load_scenario(REPO / "scenarios/paper/video_decoded.yaml").scenario.dataset.generate
    assert video.videos == 12
    assert 8.5e6 < video.videos * video.frames < 8.7e6
    seconds = video.videos * video.frames / video.fps
    assert 45e9 < seconds * video.bitrate_kbps * 1000 / 8 < 55e9  # ~50 GB of video


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"pipeline__workerz": 2}, "pipeline.workerz: unknown field (did you mean workers?)"),
        ({"pipeline__batch_size": "8"}, "pipeline.batch_size: input should be a valid integer"),
        ({"pipeline__shuffle": "yes"}, "pipeline.shuffle: input should be a valid boolean"),
        ({"dataset__generate__frames": -5}, "dataset.generate.frames: input should be greater"),
        ({"dataset__generate__width": 127}, "dataset.generate: width must be even"),
        ({"pipeline__crop": 200}, "pipeline.crop (200) is larger than the generated images"),
        ({"pipeline__cache": None}, "pipeline.mode cached needs pipeline.cache.path"),
        ({"pipeline__mode": None}, "pipeline.mode is required for video"),
        ({"pipeline__page_cache": "lukewarm"}, "pipeline.page_cache: input should be 'cold' or"),
        ({"training__steps": None}, "training: set exactly one of steps or duration_s"),
        ({"dataset__generate__codec": "av1"}, "dataset.generate.codec: input should be"),
    ],
)
def test_bad_field_is_one_line_naming_file_and_field(
    tmp_path: Path, write_scenario, change: dict, expected: str, cli
) -> None:
    path = write_scenario(tiny_video_scenario(tmp_path, **change))
    result = cli("validate", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", lines[0]), lines[0]  # file:line:col
    assert expected in lines[0]


def test_missing_field_and_mode_on_images(tmp_path: Path, write_scenario, cli) -> None:
    scenario = tiny_collage_scenario(tmp_path, pipeline__mode="decoded")
    del scenario["training"]
    path = write_scenario(scenario)
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert f"{path}: training: required field is missing" in result.stderr
    fixed = write_scenario(tiny_collage_scenario(tmp_path, pipeline__mode="decoded"), "b.yaml")
    result = cli("validate", str(fixed))
    assert "pipeline.mode applies to video datasets only" in result.stderr


def test_bring_your_own_needs_classes(tmp_path: Path, write_scenario, cli) -> None:
    scenario = tiny_collage_scenario(tmp_path)
    del scenario["dataset"]["generate"]
    result = cli("validate", str(write_scenario(scenario)))
    assert result.returncode == 2
    assert "bring-your-own data (no generate section) needs classes" in result.stderr


def test_yaml_syntax_error_missing_file_and_non_mapping(tmp_path: Path, cli) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndataset: [unclosed\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    missing = tmp_path / "missing.yaml"
    result = cli("validate", str(broken), str(missing), str(listing))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{broken}:3:1: YAML syntax error")
    assert lines[1] == f"{missing}: no such file"
    assert lines[2] == f"{listing}: expected a mapping of fields, got a list"


def test_every_problem_of_every_file_is_reported(tmp_path: Path, write_scenario, cli) -> None:
    one = write_scenario(
        tiny_video_scenario(tmp_path, pipeline__workers=-1, colour="red"), "1.yaml"
    )
    two = write_scenario(tiny_collage_scenario(tmp_path, pipeline__crop=0), "2.yaml")
    result = cli("validate", str(one), str(two))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert sorted(line.split(": ")[1] for line in lines) == [
        "colour",
        "pipeline.crop",
        "pipeline.workers",
    ]


def test_overrides_apply_before_validation(tmp_path: Path, write_scenario, cli) -> None:
    path = write_scenario(tiny_collage_scenario(tmp_path))
    result = cli(
        "show",
        str(path),
        "-o",
        "pipeline.workers=5",
        "-o",
        "training.model.width=8",
        "-o",
        "dataset.path=rel/data",
    )
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["pipeline"]["workers"] == 5
    assert shown["training"]["model"] == {"width": 8, "depth": 3}
    assert shown["dataset"]["path"] == str(Path.cwd() / "rel/data")  # resolved against the cwd
    assert shown["pipeline"]["page_cache"] == "cold"  # defaults are filled in
    bad = cli("validate", str(path), "-o", "pipeline.workers=many")
    assert bad.returncode == 2
    assert f"{path}: pipeline.workers: input should be a valid integer (got 'many')" in bad.stderr
    assert f"{path}:" in bad.stderr  # an overridden value has no line in the file
    nonsense = cli("validate", str(path), "-o", "pipeline.crop.size=3")
    assert (
        nonsense.stderr.strip()
        == "-o pipeline.crop.size=3: pipeline.crop is a value, not a section"
    )
    no_equals = cli("validate", str(path), "-o", "pipeline.crop")
    assert "expected key.path=value" in no_equals.stderr


def test_apply_overrides_parses_yaml_values() -> None:
    data = apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "d.e=null", "f=true"])
    assert data == {"a": {"b": 2, "c": [1, 2]}, "d": {"e": None}, "f": True}


def test_suite_rejects_two_datasets_at_one_path(tmp_path: Path, write_scenario, cli) -> None:
    write_scenario(tiny_video_scenario(tmp_path), "a.yaml")
    write_scenario(tiny_video_scenario(tmp_path, name="other", dataset__generate__seed=9), "b.yaml")
    write_scenario(tiny_video_scenario(tmp_path, pipeline__mode="decoded"), "c.yaml")
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "scenarios": ["a.yaml", "b.yaml", "c.yaml"]}))
    result = cli("validate", str(suite))
    assert result.returncode == 2
    assert "different datasets at the same dataset.path" in result.stderr
    assert "two scenarios are named 'tiny-video'" in result.stderr


def test_loading_a_suite_as_a_scenario_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is a suite file"):
        load_scenario(REPO / "scenarios/quick/suite.yaml")


def test_repeat_is_bounded_before_anything_runs(tmp_path: Path, write_scenario, cli) -> None:
    path = write_scenario(tiny_collage_scenario(tmp_path))
    for command in ("run", "suite"):
        for repeat in ("99999999999999999999", "1001", "0"):
            done = cli(command, path, "--repeat", repeat, "--results", tmp_path / "results")
            assert done.returncode == 2, (command, repeat, done.stderr)
            assert done.stderr.strip() == (
                f"error: --repeat {repeat}: expected 1 to 1000 (each repeat is a whole run; "
                "compare's statistics need a few dozen at most)"
            )
    assert not (tmp_path / "collage").exists() and not (tmp_path / "results").exists()
