"""Emulated preprocessing: the draw, the host's slots, the same bytes as the real pipeline,
the profile, the refusals, and (slow) a tiny run from a calibrated profile."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import flat_profile, run_harness, tiny_collage_scenario

from harness.pipeline.preprocess import (
    HostSlots,
    PreprocessEmulation,
    PreprocessProfile,
    PreprocessSettings,
    read_preprocess_profile,
    slots_name,
    write_preprocess_profile,
)
from harness.stats import TimeDraws


def collage(root: Path, **changes: object) -> dict:
    """The tiny collage at crop 48 (its images are 120 high: twice the crop, a band held out)."""
    return tiny_collage_scenario(root, pipeline__crop=48, **changes)


@pytest.fixture
def semaphore():
    name = f"/harness-test-{uuid.uuid4().hex[:12]}"
    yield name
    HostSlots(name, 1).unlink()


def test_draws_come_from_the_measured_times_scaled_and_repeat_with_the_seed():
    draws = TimeDraws([0.001, 0.002, 0.004], 0.0023, 0.5, (7, 1))
    got = [draws.next() for _ in range(200)]
    assert set(got) == {0.0005, 0.001, 0.002}
    again = TimeDraws([0.001, 0.002, 0.004], 0.0023, 0.5, (7, 1))
    assert [again.next() for _ in range(200)] == got
    assert TimeDraws([], 0.003, 2.0, 0).next() == 0.006  # no samples: the mean


def _hold_in_threads(slots: HostSlots, waits: int, k: int) -> tuple[int, list[int]]:
    """``waits`` threads each hold a slot until ``k`` holders meet (a barrier inside the slot:
    with K slots the holders meet K at a time, whatever the machine's load): the most holders at
    once, and the holders each one saw on entering."""
    lock = threading.Lock()
    meet = threading.Barrier(k, timeout=30)
    holders, most, seen = 0, 0, []

    def one() -> None:
        nonlocal holders, most
        with slots.hold():
            with lock:
                holders += 1
                most = max(most, holders)
                seen.append(holders)
            meet.wait()
            time.sleep(0.005)  # a holder more than K would be counted meanwhile
            with lock:
                holders -= 1

    threads = [threading.Thread(target=one) for _ in range(waits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return most, seen


def test_k_slots_hold_at_most_k_waits_at_once_and_are_all_free_after(semaphore):
    slots = HostSlots(semaphore, 3)
    most, seen = _hold_in_threads(slots, 12, 3)
    assert most == 3  # never more than K, and K at once when more wait
    assert len(seen) == 12
    assert slots.free() == 3


def _hold_in_process(name: str, holders, most, lock, meet) -> None:
    slots = HostSlots(name, 2)
    with slots.hold():
        with lock:
            holders.value += 1
            most.value = max(most.value, holders.value)
        meet.wait()  # the 2 holders meet: the slots are full, whatever the machine's load
        time.sleep(0.005)
        with lock:
            holders.value -= 1


def test_the_slots_are_shared_by_processes_as_dataloader_workers_are(semaphore):
    context = multiprocessing.get_context("fork")
    holders, most, lock = context.Value("i", 0), context.Value("i", 0), context.Lock()
    meet = context.Barrier(2, timeout=30)
    HostSlots(semaphore, 2).open()  # created here, then opened again by name in each process
    processes = [
        context.Process(target=_hold_in_process, args=(semaphore, holders, most, lock, meet))
        for _ in range(6)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [p.exitcode for p in processes] == [0] * 6
    assert most.value == 2
    assert HostSlots(semaphore, 2).free() == 2


def test_an_emulated_sample_waits_a_drawn_time_in_a_slot(semaphore):
    emulation = PreprocessEmulation(HostSlots(semaphore, 1), [0.002, 0.004], 0.003, 1.0, (0, 0))
    drawn = [emulation.wait() for _ in range(10)]
    assert set(drawn) <= {0.002, 0.004}
    assert HostSlots(semaphore, 1).free() == 1


def _profile(path: Path, sample_s: float = 0.002, crop: int = 48, fmt: str = "npy") -> Path:
    profile = PreprocessProfile(
        name=path.stem,
        cpu="test cpu",
        cores=2,
        settings=PreprocessSettings("image_collage", fmt, crop, 4),
        sample_s=[sample_s],
        mean_sample_s=sample_s,
        how="written by a test",
    )
    return write_preprocess_profile(profile, path)


def test_a_profile_reads_back_and_a_wrong_one_is_refused_in_one_line(tmp_path):
    path = _profile(tmp_path / "pre.json")
    profile = read_preprocess_profile(path)
    assert profile.settings.format == "npy" and profile.sample_s == [0.002]
    assert profile.source == str(path)
    document = json.loads(path.read_text())
    document["format_version"] = 9
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match="format version 9") as error:
        read_preprocess_profile(path)
    assert "\n" not in str(error.value)


def _emulated_preprocess(tmp_path: Path, **pipeline: object) -> dict:
    scenario = collage(tmp_path)
    scenario["pipeline"].update(
        {"preprocess": "emulated", "preprocess_profile": str(tmp_path / "pre.json"), **pipeline}
    )
    scenario["training"].update({"compute": "emulated", "profile": str(tmp_path / "flat.json")})
    return scenario


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"training": {"steps": 10, "warmup_steps": 2}}, "needs training.compute emulated"),
        ({"pipeline": {"preprocess_profile": None}}, "needs pipeline.preprocess_profile"),
        ({"pipeline": {"backend": "dali"}}, "reads through the torch backend"),
    ],
)
def test_emulated_preprocessing_is_refused_where_it_cannot_run(
    tmp_path, write_scenario, cli, change, named
):
    scenario = _emulated_preprocess(tmp_path)
    for section, values in change.items():
        if section == "training":
            scenario["training"] = values
        else:
            scenario[section].update(values)
    done = cli("validate", write_scenario(scenario))
    assert done.returncode == 2
    (line,) = [line for line in (done.stdout + done.stderr).splitlines() if named in line]
    assert "pipeline.preprocess" in line or "training.compute" in line


def test_a_server_shape_needs_emulated_compute(tmp_path, write_scenario, cli):
    scenario = collage(tmp_path)
    scenario["training"]["server"] = {"accelerators": 8, "cores": 40}
    done = cli("validate", write_scenario(scenario))
    assert done.returncode == 2 and "training.server applies to training.compute emulated" in (
        done.stdout + done.stderr
    )


def _samples(scenario_file: Path, emulation: PreprocessEmulation | None, numbers: range):
    """Samples ``numbers`` of the scenario read by its torch dataset in this process, with a
    fresh page ledger: (requested, first-time) bytes of each."""
    from harness.data.index import dataset_manifest
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.sources import build_source
    from harness.pipeline.torch_loader import SegmentationSamples
    from harness.scenario import load_scenario

    loaded = load_scenario(scenario_file, [])
    scenario = loaded.scenario
    source = build_source(scenario, dataset_manifest(scenario.dataset, str(scenario_file)), None)
    pipeline = scenario.pipeline
    plan = SamplePlan(source.files, pipeline.crop, scenario.training.seed, True, 1)
    dataset = SegmentationSamples(source, plan, pipeline.crop, "fail", preprocess=emulation)
    samples = dataset.__getitems__(list(numbers))
    for sample in samples:
        assert sample.fatal is None
        assert tuple(sample.image.shape) == (3, pipeline.crop, pipeline.crop)
        assert tuple(sample.mask.shape) == (pipeline.crop, pipeline.crop)
    return [(s.requested_bytes, s.first_time_bytes) for s in samples]


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_emulated_preprocessing_reads_the_same_bytes_as_the_real_pipeline(
    tmp_path, write_scenario, cli, semaphore, fmt
):
    """Per sample, in order: the bytes asked of the storage and those asked for the first
    time (the page ledger) are the real pipeline's, for crops of a memory map and whole files."""
    scenario = collage(tmp_path, dataset__generate__format=fmt)
    file = write_scenario(scenario)
    assert cli("datagen", file).returncode == 0
    emulation = PreprocessEmulation(HostSlots(semaphore, 2), [0.0001], 0.0001, 1.0, (0, 0))
    real = _samples(file, None, range(40))
    emulated = _samples(file, emulation, range(40))
    assert emulated == real
    assert sum(first for _, first in real) > 0  # the ledger counted something
    assert any(first < requested for requested, first in real)  # and repeats only once


def test_calibration_times_decode_without_the_read(tmp_path, write_scenario, cli):
    scenario = collage(tmp_path, dataset__generate__format="png")
    file = write_scenario(scenario)
    assert cli("datagen", file).returncode == 0
    done = cli("calibrate", "--preprocess", file, "--out", tmp_path / "pre.json", "--samples", 16)
    assert done.returncode == 0, done.stderr
    profile = read_preprocess_profile(tmp_path / "pre.json")
    assert len(profile.sample_s) == 16 and all(t > 0 for t in profile.sample_s)
    assert profile.settings == PreprocessSettings("image_collage", "png", 48, 8)
    assert profile.cores >= 1 and profile.cpu
    assert np.mean(profile.sample_s) == pytest.approx(profile.mean_sample_s)


def test_a_profile_for_other_data_is_refused_naming_the_difference(tmp_path, write_scenario):
    _profile(tmp_path / "pre.json", crop=32)
    flat_profile(tmp_path / "flat.json")
    scenario = _emulated_preprocess(tmp_path)
    scenario["training"].update({"steps": 12, "warmup_steps": 2, "model": {"width": 8, "depth": 2}})
    scenario["pipeline"]["batch_size"] = 4
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    done = run_harness("run", str(file), "--results", str(tmp_path / "results"), "--quiet")
    assert done.returncode == 2
    assert "crop 32 in the profile, 48 here" in done.stderr


@pytest.mark.slow
def test_a_tiny_run_with_preprocessing_emulated_from_a_calibrated_profile(tmp_path, write_scenario):
    scenario = collage(tmp_path, dataset__generate__format="png")
    scenario["pipeline"].update({"batch_size": 4, "workers": 2})
    file = write_scenario(scenario)
    assert run_harness("datagen", str(file)).returncode == 0
    done = run_harness(
        "calibrate",
        "--preprocess",
        str(file),
        "--out",
        str(tmp_path / "pre.json"),
        "--samples",
        "24",
    )
    assert done.returncode == 0, done.stderr
    flat_profile(tmp_path / "flat.json", 0.005)
    scenario["pipeline"].update(
        {
            "preprocess": "emulated",
            "preprocess_profile": str(tmp_path / "pre.json"),
            "preprocess_cores": 2,
            "preprocess_speed": 2.0,
        }
    )
    scenario["training"] = {
        "steps": 30,
        "warmup_steps": 3,
        "model": {"width": 8, "depth": 2},
        "compute": "emulated",
        "profile": str(tmp_path / "flat.json"),
        "accelerators": 2,
    }
    file = write_scenario(scenario, "emulated.yaml")
    done = run_harness("run", str(file), "--results", str(tmp_path / "results"), "--quiet")
    assert done.returncode == 0, done.stderr
    (folder,) = sorted((tmp_path / "results").iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    emulation = summary["emulation"]
    assert emulation["preprocess"] == "emulated"
    assert emulation["preprocess_profile_file"] == str(tmp_path / "pre.json")
    assert emulation["preprocess_speed"] == 2.0 and emulation["preprocess_cores"] == 2
    assert summary["complete"] is True
    assert summary["metrics"]["requested_MBps"]["value"] > 0
    for server in range(2):  # the run's semaphores are gone with it
        assert not (Path("/dev/shm") / f"sem.{slots_name(folder.name, server)[1:]}").exists()
    # the report says what was emulated and from which profiles, in the HTML and the PDF
    from pypdf import PdfReader

    from harness.report import write_report

    html, pdf = write_report([folder], tmp_path / "report")
    page = html.read_text()
    pdf_text = " ".join(p.extract_text() for p in PdfReader(pdf).pages)
    for text in (
        "What was emulated, and from which profile",
        "emulated: profile pre (measured on",
        "2 per host",
        "profile flat-5ms",
    ):
        assert text in page, text
        assert " ".join(text.split()) in " ".join(pdf_text.split()), text


def test_a_semaphore_no_process_maps_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    """A killed run leaves its semaphores in /dev/shm: the next run removes those that no
    process maps any more, never one a run is using."""
    from harness.pipeline.preprocess import HostSlots, remove_stale_slots, slots_name

    live = HostSlots(slots_name(f"live-{os.getpid()}", 0), 2)
    live.open()
    dead = HostSlots(slots_name(f"dead-{os.getpid()}", 0), 2)
    dead.open()
    dead_file = Path("/dev/shm") / f"sem.{dead.name.lstrip('/')}"
    dead.close()  # as a SIGKILLed run leaves it: the name stays, nobody maps it
    try:
        assert dead_file.exists()
        removed = remove_stale_slots()
        assert dead_file in removed and not dead_file.exists()
        assert (Path("/dev/shm") / f"sem.{live.name.lstrip('/')}").exists()
    finally:
        live.unlink()
        dead.unlink()


def test_placeholder_batches_travel_as_their_shape_and_real_pixels_as_pixels() -> None:
    """Emulated samples (``placeholder_arrays`` from a source) become one-byte placeholder
    tensors: stacked, pickled to a DataLoader's rank and back, a batch at crop 512 stays a few
    hundred bytes, and reads as zeros of the right shape; real pixels are stacked and sent whole."""
    import pickle

    import torch

    from harness.pipeline.batch import (
        INLINE_PIXEL_BYTES,
        Batch,
        Sample,
        is_placeholder,
        is_placeholder_array,
        placeholder_arrays,
        placeholder_pixels,
    )

    image, _mask = placeholder_arrays(512)
    assert is_placeholder_array(image) and not is_placeholder_array(image.copy())
    samples = [
        Sample(placeholder_pixels(3, 512, 512), placeholder_pixels(512, 512), end_ns=n)
        for n in range(16)
    ]
    batch = Batch.collate(samples)
    assert is_placeholder(batch.image) and tuple(batch.image.shape) == (16, 3, 512, 512)
    sent = pickle.dumps(batch)
    assert len(sent) < 4096  # not 16 x 1 MiB of zeros
    received = pickle.loads(sent)
    assert tuple(received.image.shape) == (16, 3, 512, 512) and received.image.dtype == torch.uint8
    assert tuple(received.mask.shape) == (16, 512, 512) and not received.mask.any()
    assert received.end_ns.tolist() == list(range(16))
    # real pixels: stacked, and sent whole (inline below INLINE_PIXEL_BYTES)
    pixels = torch.arange(3 * 8 * 8, dtype=torch.uint8).reshape(3, 8, 8)
    real = Batch.collate([Sample(pixels, pixels[0], end_ns=0), Sample(pixels, pixels[1], end_ns=1)])
    assert not is_placeholder(real.image) and real.image.nbytes < INLINE_PIXEL_BYTES
    back = pickle.loads(pickle.dumps(real))
    assert torch.equal(back.image, real.image) and torch.equal(back.mask[1], pixels[1])
