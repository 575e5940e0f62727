"""The report's emulation table: what a run emulated and from which profile, read from the
``emulation`` block the run writes (built here by the same code a run uses)."""

from __future__ import annotations

from pathlib import Path

from conftest import flat_profile

from harness.pipeline.preprocess import PreprocessPlan, PreprocessProfile, PreprocessSettings
from harness.report.content import NOT_MEASURED
from harness.report.sections_tables import emulation_rows
from harness.train.profiles import ComputeTimes, read_profile


def _emulation(tmp_path: Path, *, preprocess: bool, per_server: int | None) -> dict:
    compute = ComputeTimes(read_profile(flat_profile(tmp_path / "flat.json", 0.02)), 1.0, None)
    document = compute.document()
    if per_server is not None:
        document["server"] = {"accelerators": per_server, "cores": 40}
    if preprocess:
        profile = PreprocessProfile(
            name="pre-epyc",
            cpu="AMD EPYC",
            cores=2,
            settings=PreprocessSettings("video", "jpeg", 256, 8),
            sample_s=[0.012, 0.018],
            mean_sample_s=0.015,
            how="written by a test",
        )
        document |= PreprocessPlan(profile, 1.5, 40, per_server).document()
    return document


def test_emulated_compute_and_preprocessing_name_their_profiles_speed_cores_and_server(
    tmp_path: Path,
) -> None:
    rows = dict(emulation_rows(_emulation(tmp_path, preprocess=True, per_server=8)))
    assert rows["compute"] == "emulated: profile flat-20ms (test-class, mean step 20.00 ms)"
    assert rows["preprocessing"] == (
        "emulated: profile pre-epyc (measured on AMD EPYC, 2 cores; jpeg, mean 15.00 ms a sample)"
    )
    assert rows["preprocessing speed factor"] == "1.5 (mean 10.00 ms a sample here)"
    assert rows["preprocessing cores"] == "40 per server"
    assert rows["server shape"] == "8 accelerators, 40 cores"


def test_real_preprocessing_and_real_compute_say_so(tmp_path: Path) -> None:
    rows = dict(emulation_rows(_emulation(tmp_path, preprocess=False, per_server=None)))
    assert rows["preprocessing"] == "real (this client's CPU)"
    assert rows["preprocessing cores"] == rows["server shape"] == NOT_MEASURED
    real = dict(emulation_rows(None))
    assert real["compute"] == "real (trained)" and real["preprocessing"] == "real"
    assert list(real) == list(rows)  # one row per label whatever the run, for the table's columns


def test_preprocessing_cores_per_host_without_a_server_shape(tmp_path: Path) -> None:
    rows = dict(emulation_rows(_emulation(tmp_path, preprocess=True, per_server=None)))
    assert rows["preprocessing cores"] == "40 per host"
    assert rows["server shape"] == NOT_MEASURED
