"""Hostile and careless scenario files: each answered in one line, with its position, fast.

Scenario files arrive in pull requests that a CI gate validates, so any file under 1 MB must be
answered (exit 0 or 2) in well under a second and never with a traceback.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_collage_scenario

from harness.errors import ScenarioError
from harness.scenario import load_scenario
from harness.scenario.machine import Machine, check_machine, machine_problems
from harness.scenario.reading import parse_yaml


def _laughs(levels: int = 12) -> str:
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        text += f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]\n"
    return text


def _merges(levels: int = 40) -> str:
    text = "m0: &m0 {x: 1, y: 2}\n"
    for level in range(1, levels):
        text += f"m{level}: &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: 1}}\n"
    return text


HOSTILE = {
    # name: (file content, what the one line says)
    "billion laughs": (_laughs(), r":4:\d+: holds more than 5000 values"),
    "merge-key laughs": (_merges(), r":\d+:\d+: holds more than 5000 values"),
    "deep flow nesting": ("a: " + "[" * 200_000 + "]" * 200_000, r":1:\d+: YAML syntax error"),
    "deep block nesting": (
        "".join(" " * i + f"k{i}:\n" for i in range(40)),
        r":\d+:\d+: nested more than 32 levels deep",
    ),
    "long flat list": ("a: [" + ",".join(["1"] * 400_000) + "]", r":1:\d+: holds more than"),
    "many keys": ("".join(f"k{i}: {i}\n" for i in range(60_000)), r":\d+:\d+: holds more than"),
    "huge integer": (
        "name: x\npipeline: {workers: " + "9" * 900_000 + "}\n",
        r":2:21: cannot read",
    ),
    "python tag": (
        "name: !!python/object/apply:os.system [ls]\n",
        r":1:7: tag \S+python/object/apply:os.system is not supported",
    ),
    "unknown scalar tag": ("name: !env HOME\n", r":1:7: tag !env is not supported"),
    "two documents": ("name: a\n---\nname: b\n", r":2:1: a second YAML document"),
    "recursive alias": ("a: &a [*a]\n", r":1:8: alias \*a names no finished anchor"),
    "collection key": ("? [a, b]\n: 1\n", r":1:3: a key must be a plain value"),
    "not utf-8": (b"name: \xff\xfe\n", r": not UTF-8 text"),
    "control character": ("name: x\x00\n", r":1:8: YAML syntax error: unacceptable character"),
    "over 1 MB": ("#" * 1_000_001, r": larger than 1000000 bytes"),
}


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_shape_is_refused_in_one_line_by_its_limit(tmp_path: Path, cli, shape: str) -> None:
    content, expected = HOSTILE[shape]
    path = tmp_path / "hostile.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    cli("validate", "--schema")  # imports done: the time below is the file's alone
    started = time.perf_counter()
    result = cli("validate", path)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    # the refusal names the limit that stopped the reading (so nothing was expanded past it);
    # how fast that is belongs to a quiet machine, not to a test: printed, not asserted
    assert re.match(rf"{path}{expected}", lines[0]), lines[0]
    print(f"{shape}: refused in {elapsed:.3f} s")


def test_duplicate_key_names_both_lines(tmp_path: Path, cli) -> None:
    path = tmp_path / "twice.yaml"
    scenario = tiny_collage_scenario(tmp_path)
    text = yaml.safe_dump(scenario, sort_keys=False)
    path.write_text(text + "pipeline:\n  workers: 8\n  page_cache: warm\n")
    first = text.splitlines().index("pipeline:") + 1
    second = len(text.splitlines()) + 1
    result = cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}:{second}:1: duplicate key 'pipeline' (first at line {first}, column 1); "
        "YAML keeps only one of them"
    )


@pytest.mark.parametrize(
    "text",
    [
        "a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\nc: {<<: [*a, {x: 5, q: 1}], '<<': 4}\n",
        "a: &a [1, 2.5, true, null, ~, 0x1f, 1e3, '8', 2001-12-14]\nb: *a\nc: !!str 12\n",
        "a:\n  - &x {k: v}\n  - *x\nb: |\n  text\n",
    ],
)
def test_documents_read_as_safe_load_reads_them(text: str) -> None:
    assert parse_yaml(text, Path("f.yaml")) == yaml.safe_load(text)


def test_every_count_has_a_bound_with_its_reason(tmp_path: Path, write_scenario, cli) -> None:
    path = write_scenario(
        tiny_collage_scenario(
            tmp_path,
            pipeline__workers=99999999999999999999999,
            pipeline__batch_size=10**6,
            training__steps=10**12,
        )
    )
    result = cli("validate", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(
        "pipeline.workers: at most 1024 (processes or threads on one host), "
        "got 99999999999999999999999" in line
        for line in lines
    ), lines
    assert any("pipeline.batch_size: at most 65536" in line for line in lines), lines
    assert any("training.steps: at most 1000000000" in line for line in lines), lines
    assert all(line.startswith(f"{path}:") and line.count(":") >= 3 for line in lines), lines


def test_schema_is_printed_for_editors(cli) -> None:
    result = cli("validate", "--schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    workers = schema["$defs"]["Pipeline"]["properties"]["workers"]
    assert (workers["minimum"], workers["maximum"]) == (0, 1024)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "dataset", "training"}
    assert cli("validate").returncode == 2  # neither files nor --schema


def test_machine_relative_limits_refuse_unless_forced(
    tmp_path: Path, write_scenario, capsys
) -> None:
    small = Machine(cores=2, memory_bytes=2**30, available_bytes=2**29)
    many = tiny_collage_scenario(tmp_path, pipeline__workers=64)
    loaded = load_scenario(write_scenario(many))
    refusals, _ = machine_problems(loaded.scenario, small)
    assert refusals == ["pipeline.workers 64 x 1 accelerator(s) = 64 workers on 2 cores (more "
                        "than 8 per core)"]  # fmt: skip
    with pytest.raises(ScenarioError, match="--force runs it anyway"):
        check_machine([loaded], force=False, machine=small)
    check_machine([loaded], force=True, machine=small)
    assert "warning:" in capsys.readouterr().err
    big = tiny_collage_scenario(tmp_path, pipeline__batch_size=65536, pipeline__crop=64)
    refusals, _ = machine_problems(load_scenario(write_scenario(big, "b.yaml")).scenario, small)
    assert refusals and "GiB in flight" in refusals[0]
    fine = tiny_collage_scenario(tmp_path, pipeline__workers=2)
    assert machine_problems(load_scenario(write_scenario(fine, "c.yaml")).scenario, small) == (
        [],
        [],
    )


YAML11_NUMBERS = {
    # the count as written: the field's line, and what the refusal says YAML 1.1 makes of it
    "010": "010 has a leading zero, which YAML 1.1 reads as octal (8)",
    "-07": "-07 has a leading zero, which YAML 1.1 reads as octal (-7)",
    "01.5": "01.5 has a leading zero, which YAML 1.1 reads as 1.5 but 010 as 8",
    "1:20": "1:20 reads as base 60 in YAML 1.1 (80)",
    "1:20:30": "1:20:30 reads as base 60 in YAML 1.1 (4830)",
    "1:20.5": "1:20.5 reads as base 60 in YAML 1.1 (80.5)",
}


@pytest.mark.parametrize("written", sorted(YAML11_NUMBERS))
def test_yaml11_octal_and_base_60_numbers_are_refused(tmp_path: Path, cli, written: str) -> None:
    path = tmp_path / "numbers.yaml"
    text = yaml.safe_dump(tiny_collage_scenario(tmp_path), sort_keys=False)
    path.write_text(text.replace("  steps: 10\n", f"  steps: {written}\n"))
    line = path.read_text().splitlines().index(f"  steps: {written}") + 1
    result = cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}:{line}:10: training.steps: {YAML11_NUMBERS[written]}: write the number "
        "without it (or quote it for a string)"
        if "zero" in YAML11_NUMBERS[written]
        else f"{path}:{line}:10: training.steps: {YAML11_NUMBERS[written]}: write the number "
        "itself (or quote it for a string)"
    )
    good = tmp_path / "good.yaml"
    good.write_text(text)
    override = cli("validate", good, "-o", f"pipeline.workers={written}")
    assert override.returncode == 2
    assert f"-o pipeline.workers={written}: {YAML11_NUMBERS[written]}" in override.stderr


@pytest.mark.parametrize("written", ["0", "0.5", "10", "1_000", "0x10", "1e3", "'010'", "-0.25"])
def test_ordinary_numbers_and_quoted_strings_still_read(written: str) -> None:
    document = parse_yaml(f"value: {written}\n", Path("x.yaml"))
    assert document["value"] == yaml.safe_load(written)
