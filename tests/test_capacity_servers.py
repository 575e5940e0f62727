"""Capacity in whole servers: ``--server AxC``, the search counting servers, the answer."""

from __future__ import annotations

import argparse

import pytest

from harness.capacity.lines import answer_sentence
from harness.capacity.probes import probe_overrides
from harness.capacity.search import Probe, Search
from harness.commands import capacity as capacity_command
from harness.errors import HarnessError
from harness.results.capacity_file import CapacityFile, ScenarioSearch, ServerRecord
from harness.scenario import CapacitySettings
from harness.scenario.capacity_settings import server_shape


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    capacity_command.configure(parser)
    return parser.parse_args(["scenario.yaml", *argv])


def test_server_8x40_is_parsed_and_bad_shapes_are_refused_naming_the_flag():
    settings = capacity_command.settings_from(_args("--server", "8x40"))
    assert settings.server == "8x40" and server_shape(settings.server) == (8, 40)
    for bad in ("8", "0x40", "8x", "x40", "8x40x2", "8 x 40"):
        with pytest.raises(HarnessError, match=r"^--server: "):
            capacity_command.settings_from(_args("--server", bad))


def test_the_probes_get_the_server_shape_as_overrides():
    overrides = probe_overrides(CapacitySettings(server="8x40"), [])
    assert "training.server.accelerators=8" in overrides
    assert "training.server.cores=40" in overrides
    assert not any("server" in o for o in probe_overrides(CapacitySettings(), []))


def _search(per_server: int, fed: int, max_accelerators: int = 64) -> tuple[Search, list[int]]:
    """A search against a fake storage that keeps ``fed`` accelerators busy: the counts it
    probed, in accelerators."""
    search = Search.from_settings(CapacitySettings(max_accelerators=max_accelerators), per_server)
    probed = []
    while (count := search.next_count()) is not None:
        accelerators = count * per_server
        probed.append(accelerators)
        busy = 99.0 if accelerators <= fed else 50.0
        search.record(Probe(count, busy, busy))
    return search, probed


def test_the_search_grows_in_whole_servers_and_answers_in_servers():
    search, probed = _search(per_server=8, fed=20)
    assert all(a % 8 == 0 for a in probed)
    assert probed[:3] == [8, 16, 32]  # 1, 2, 4 servers
    assert search.answer == 2  # 2 servers of 8: 16 accelerators; 3 (24) fail
    assert not search.capped
    capped, _ = _search(per_server=8, fed=1000, max_accelerators=20)
    assert capped.answer == 2 and capped.capped  # 20 accelerators hold 2 whole servers


def test_without_a_server_shape_the_search_is_as_before():
    search, probed = _search(per_server=1, fed=20)
    assert search.answer == 20 and probed[:3] == [1, 2, 4]


def test_the_answer_says_servers_and_accelerators_and_old_files_still_read():
    entry = ScenarioSearch(
        scenario="s",
        max_accelerators=16,
        max_servers=2,
        server=ServerRecord(accelerators=8, cores=40),
        hosts=[],
    )
    sentence = answer_sentence(entry)
    assert "2 server(s) (16 emulated" in sentence and "8 accelerators and 40 cores each" in sentence
    old = CapacityFile.model_validate(
        {"format": "harness-capacity", "format_version": 1, "scenarios": [{"scenario": "s"}]}
    )
    assert old.scenarios[0].server is None and old.scenarios[0].max_servers is None
