"""Emulation's pieces in-process: profiles, step times, the loop's timing and stop vote, the
registries and the typed batch (no data, no subprocess)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.collect import KNOWN
from harness.errors import HarnessError
from harness.pipeline import BACKEND_NAMES, backend_unavailable, require_backend
from harness.pipeline.batch import Batch, Sample
from harness.pipeline.prefetch import BackgroundBatches
from harness.scenario import Collectors, Pipeline, Scenario
from harness.summary import RankRecords, step_table
from harness.train.emulated import DeadlineWaiter, emulated_step
from harness.train.loop import Device, LoopRecords, train
from harness.train.profiles import (
    ComputeTimes,
    Profile,
    ProfileSettings,
    StepTimes,
    compute_times,
    read_profile,
    resolve_profile,
    shipped_profiles,
    training_flops,
    write_profile,
)

SETTINGS = ProfileSettings(
    batch_size=4, crop=48, width=8, depth=2, classes=4, precision="fp32", optimizer="adamw"
)


def profile(step_s: list[float], mean: float = 0.02, flops: float | None = None) -> Profile:
    return Profile("p", "test", SETTINGS, step_s, mean, flops, "by hand")


def scenario(**training: object) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "s",
            "dataset": {
                "kind": "image_collage",
                "path": "x",
                "generate": {"images": 1, "width": 160, "height": 120},
            },
            "pipeline": {"batch_size": 4, "crop": 48},
            "training": {"steps": 10, "model": {"width": 8, "depth": 2}, **training},
        }
    )


def test_step_times_are_drawn_from_the_samples_seeded_and_scaled() -> None:
    times = ComputeTimes(profile([0.01, 0.02, 0.03]), 2.0, None)
    first = [times.sampler(seed=1).next() for _ in range(1)]
    drawn = StepTimes(times, seed=1)
    values = [drawn.next() for _ in range(200)]
    assert set(values) == {0.02, 0.04, 0.06}  # every sample, times the scale
    assert values[0] == first[0]  # the same seed draws the same sequence
    assert StepTimes(ComputeTimes(profile([], mean=0.05), 1.0, None), 0).next() == 0.05


def test_profile_files_round_trip_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    path = write_profile(profile([0.01, 0.03], mean=0.02, flops=1e9), tmp_path / "p.json")
    back = read_profile(path)
    assert back.settings == SETTINGS and back.step_s == [0.01, 0.03] and back.source == str(path)
    document = json.loads(path.read_text())
    assert document["format_version"] == 1 and document["p50_s"] == pytest.approx(0.02)
    document["format_version"] = 99
    path.write_text(json.dumps(document))
    with pytest.raises(HarnessError, match="format version 99; this harness reads version 1"):
        read_profile(path)
    path.write_text("{}")
    with pytest.raises(HarnessError, match="not a harness profile"):
        read_profile(path)
    document["format_version"], document["mean_step_s"] = 1, -1
    path.write_text(json.dumps(document))
    with pytest.raises(HarnessError, match="malformed profile: step times must be positive"):
        read_profile(path)


def test_shipped_profiles_resolve_by_name_and_unknown_names_list_them() -> None:
    names = [p.name for p in shipped_profiles()]
    assert "h200-unet-w64-512-bf16-b16" in names
    h200 = resolve_profile("h200-unet-w64-512-bf16-b16")
    assert h200.mean_step_s == pytest.approx(0.0667) and h200.settings.batch_size == 16
    with pytest.raises(HarnessError, match="no shipped profile of that name") as error:
        resolve_profile("h100-nope")
    assert "h200-unet-w64-512-bf16-b16" in str(error.value)


def test_a_profile_for_other_settings_is_refused_naming_each_difference(tmp_path: Path) -> None:
    path = write_profile(profile([0.02]), tmp_path / "p.json")
    assert compute_times(scenario(compute="emulated", profile=str(path)), 4).scale == 1.0
    other = scenario(compute="emulated", profile="h200-unet-w64-512-bf16-b16")
    with pytest.raises(HarnessError) as error:
        compute_times(other, 4)
    message = str(error.value)
    for difference in ("batch 16 in the profile, 4 here", "crop 512", "model width 64"):
        assert difference in message
    scaled = compute_times(
        scenario(compute="emulated", profile="h200-unet-w64-512-bf16-b16", profile_scaling="flops"),
        5,
    )
    assert scaled.scale == pytest.approx(scaled.scenario_flops / 18488223596544.0)
    assert 0 < scaled.scale < 1e-3


def test_training_flops_grow_with_the_batch_and_the_crop() -> None:
    one = training_flops(SETTINGS)
    assert one > 0
    assert training_flops(ProfileSettings(**{**SETTINGS.__dict__, "batch_size": 8})) == (
        pytest.approx(2 * one)
    )
    assert training_flops(ProfileSettings(**{**SETTINGS.__dict__, "crop": 96})) == (
        pytest.approx(4 * one, rel=0.01)
    )


def test_scenario_keys_for_emulation_are_validated() -> None:
    with pytest.raises(ValueError, match=r"needs training\.profile"):
        scenario(compute="emulated")
    with pytest.raises(ValueError, match=r"applies to training\.compute emulated"):
        scenario(accelerators=4)
    with pytest.raises(ValueError):
        scenario(compute="emulated", profile="p", collective_timeout_s=0)
    assert scenario(compute="emulated", profile="p", accelerators=8).training.accelerators == 8


def test_registries_are_the_scenario_s_vocabulary() -> None:
    assert BACKEND_NAMES == ("torch", "dali", "nvdec")
    assert Pipeline.model_fields["backend"].annotation.__args__ == BACKEND_NAMES
    assert list(Collectors().enabled) == [name for name in KNOWN if name != "prometheus"]
    assert backend_unavailable("torch") is None
    assert "unknown backend" in (backend_unavailable("tape") or "")
    assert hasattr(require_backend("torch"), "batches")


def _sample(end_ns: int, latency: float = 1e6) -> Sample:
    return Sample(
        torch.zeros(3, 4, 4, dtype=torch.uint8),
        torch.zeros(4, 4, dtype=torch.uint8),
        end_ns,
        latency_ns=latency,
        requested_bytes=100,
        first_time_bytes=50,
    )


def test_a_batch_keeps_not_measured_as_nan_never_zero() -> None:
    batch = Batch.collate([_sample(1), _sample(2)])
    assert len(batch) == 2 and batch.requested_bytes.tolist() == [100, 100]
    untimed = Batch.untimed(batch.image, batch.mask, 5)
    assert np.isnan(untimed.latency_ns).all() and np.isnan(untimed.first_time_bytes).all()
    assert untimed.end_ns.tolist() == [5, 5]


def test_the_loop_times_wait_compute_and_barrier_and_stops_on_the_vote() -> None:
    batches = [Batch.collate([_sample(time.monotonic_ns())]) for _ in range(50)]
    votes: list[bool] = []

    def step(_batch: Batch) -> None:
        time.sleep(0.002)

    def synchronise(stop: bool) -> bool:
        votes.append(stop)
        time.sleep(0.001)
        return len(votes) >= 7  # the other ranks decide to stop at the 7th step

    records = LoopRecords()
    train(
        step,
        batches,
        Device(torch.device("cpu"), "fp32"),
        t0=time.monotonic(),
        warmup_steps=2,
        steps=40,
        duration_s=None,
        records=records,
        synchronise=synchronise,
    )
    assert len(records.steps) == 7 and not any(votes)  # it ran until the vote, not to 40
    for row in records.steps:
        assert row["compute_s"] >= 0.002 and row["barrier_s"] >= 0.001
        assert math.isnan(row["loss"])
        total = row["wait_s"] + row["compute_s"] + row["barrier_s"]
        assert total == pytest.approx(row["t_end"] - row["t_start"], abs=1e-4)
    assert [row["warmup"] for row in records.steps[:3]] == [True, True, False]


def test_the_deadline_waiter_never_returns_before_its_deadline() -> None:
    waiter = DeadlineWaiter()
    # each path: spun whole (under the margin), slept then spun, already past; the margin at its
    # bounds too
    for margin in (waiter.margin_ns, DeadlineWaiter.MIN_MARGIN_NS, DeadlineWaiter.MAX_MARGIN_NS):
        for wait_ns in (-1_000, 0, 30_000, 150_000, 700_000, 2_000_000):
            waiter.margin_ns = margin
            deadline = time.monotonic_ns() + wait_ns
            waiter.wait_until(deadline)
            assert time.monotonic_ns() >= deadline, (margin, wait_ns)
            low, high = DeadlineWaiter.MIN_MARGIN_NS, DeadlineWaiter.MAX_MARGIN_NS
            assert low <= waiter.margin_ns <= high


def test_the_margin_rises_after_late_wake_ups_and_drifts_down_after_timely_ones() -> None:
    waiter = DeadlineWaiter()
    start = waiter.margin_ns
    waiter._learn(late=True)
    assert waiter.margin_ns > start
    for _ in range(10_000):
        waiter._learn(late=False)
    assert waiter.margin_ns == DeadlineWaiter.MIN_MARGIN_NS
    for _ in range(10_000):
        waiter._learn(late=True)
    assert waiter.margin_ns == DeadlineWaiter.MAX_MARGIN_NS


def test_the_loop_records_an_emulated_step_s_drawn_time_beside_the_measured_one() -> None:
    cpu = Device(torch.device("cpu"), "fp32")
    times = StepTimes(ComputeTimes(profile([0.0002, 0.0005, 0.001, 0.003]), 1.0, None), seed=3)
    emulated = emulated_step(times, cpu)
    records = LoopRecords()
    batches = [Batch.collate([_sample(time.monotonic_ns())]) for _ in range(40)]
    train(emulated, batches, cpu, t0=time.monotonic(), warmup_steps=2, steps=40,
          duration_s=None, records=records)  # fmt: skip
    drawn = [row["compute_nominal_s"] for row in records.steps]
    assert len(drawn) == 40 and set(drawn) <= {0.0002, 0.0005, 0.001, 0.003}
    assert len(set(drawn)) > 1  # each step its own draw
    for row in records.steps:  # the measured step is never shorter than the drawn one
        assert row["compute_s"] >= row["compute_nominal_s"]
    steps = step_table([RankRecords(0, records.steps, [])])
    assert steps["compute_nominal_s"].tolist() == drawn

    real = LoopRecords()  # a step that runs (no drawn time): NaN, in the loop and the table
    train(lambda _batch: 0.5, batches[:3], cpu, t0=time.monotonic(), warmup_steps=1, steps=3,
          duration_s=None, records=real)  # fmt: skip
    assert all(math.isnan(row["compute_nominal_s"]) for row in real.steps)
    older = [{k: v for k, v in row.items() if k != "compute_nominal_s"} for row in real.steps]
    assert step_table([RankRecords(0, older, [])])["compute_nominal_s"].isna().all()


def test_background_batches_deliver_in_order_then_the_failure() -> None:
    def produce():
        yield Batch.collate([_sample(1)])
        yield Batch.collate([_sample(2)])
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Killed")

    iterator = iter(BackgroundBatches(produce()))
    assert next(iterator).end_ns.tolist() == [1]
    assert next(iterator).end_ns.tolist() == [2]
    with pytest.raises(RuntimeError, match="worker"):
        next(iterator)
    iterator.close()


def test_background_batches_stop_when_closed_early() -> None:
    closed = []

    def endless():
        try:
            while True:
                yield Batch.collate([_sample(0)])
        finally:
            closed.append(True)

    iterator = iter(BackgroundBatches(endless()))
    next(iterator)
    iterator.close()
    assert closed == [True]
