"""Compute profiles for emulated accelerators: how long one training step takes on a device.

A profile is measured by ``harness calibrate`` (the scenario's real U-Net steps on batches already
in memory, so no storage is involved) and stores the step times it measured with the settings that
determine them (batch, crop, model, precision) and the training FLOPs of one batch. An emulated
run draws each step's compute time from those samples. A profile is only valid for the settings
it was measured with: a scenario whose batch, crop, model or optimiser differs is refused, naming
the difference (the precision is the profile's: an emulated step computes nothing), unless it asks
for ``profile_scaling: flops``, which scales the times by the ratio of FLOPs per batch (counted by
``torch.utils.flop_counter`` on the meta device: no memory, no compute).

Shipped profiles live beside this module as ``profiles/<name>.json``; ``harness profiles`` lists
them. Format: ``{"format": "harness-profile", "format_version": 1, ...}``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.files import atomic_write, read_json
from harness.progress import bar
from harness.scenario import Scenario
from harness.stats import TimeDraws

FORMAT = "harness-profile"
FORMAT_VERSION = 1
SHIPPED = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class ProfileSettings:
    """What a step's time depends on (and is checked against the scenario)."""

    batch_size: int
    crop: int
    width: int
    depth: int
    classes: int
    precision: str
    optimizer: str
    world: int = 1  # DDP ranks the steps ran with
    # "unet": steps of the harness's U-Net; otherwise an MLPerf Storage workload (e.g.
    # "mlperf-unet3d") whose configured computation_time per batch the profile carries: only its
    # batch applies, and only a records scenario (workload "records" here) may use it
    workload: str = "unet"

    def differences(self, other: ProfileSettings) -> list[str]:
        """Settings that change the work of a step, as ``name profile X, scenario Y``."""
        if (self.workload == "unet") != (other.workload == "unet"):
            return [f"workload {self.workload} in the profile, {other.workload} here"]
        checked: tuple[str, ...] = ("batch_size", "crop", "width", "depth", "optimizer")
        if self.workload != "unet":
            checked = ("batch_size",)
        names = {
            "batch_size": "batch",
            "crop": "crop",
            "width": "model width",
            "depth": "depth",
            "optimizer": "optimizer",
        }
        return [
            f"{names[key]} {getattr(self, key)} in the profile, {getattr(other, key)} here"
            for key in checked
            if getattr(self, key) != getattr(other, key)
        ]


@dataclass(frozen=True)
class Profile:
    name: str
    device: str  # e.g. "NVIDIA H200" or "cpu: Intel Xeon ... (2 threads)"
    settings: ProfileSettings
    step_s: list[float]  # measured step times; empty when only the mean is known
    mean_step_s: float
    flops_per_batch: float | None
    how: str  # how the numbers were obtained
    created: str = ""
    software: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the file it was read from

    def summary_line(self) -> str:
        s = self.settings
        if s.workload != "unet":
            return (
                f"{self.name}  {self.mean_step_s * 1e3:.1f} ms/step (batch {s.batch_size}, "
                f"{s.workload}) on {self.device}"
            )
        return (
            f"{self.name}  {self.mean_step_s * 1e3:.1f} ms/step (batch {s.batch_size}, crop "
            f"{s.crop}, U-Net w{s.width} d{s.depth}, {s.precision}) on {self.device}"
        )

    def document(self) -> dict[str, Any]:
        times = np.asarray(self.step_s, dtype=np.float64)
        stats = {}
        if times.size:
            for q in (50, 90, 99):
                stats[f"p{q}_s"] = float(np.percentile(times, q))
            stats["std_s"] = float(times.std())
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "created": self.created,
            "device": self.device,
            "software": self.software,
            "settings": asdict(self.settings),
            "flops_per_batch": self.flops_per_batch,
            "mean_step_s": self.mean_step_s,
            **stats,
            "step_s": self.step_s,
            "how": self.how,
        }


def shipped_profiles() -> list[Profile]:
    return [read_profile(path) for path in sorted(SHIPPED.glob("*.json"))]


def resolve_profile(name_or_file: str) -> Profile:
    """A shipped profile by name, or a profile file; one-line error otherwise."""
    shipped = SHIPPED / f"{name_or_file}.json"
    if "/" not in name_or_file and shipped.is_file():
        return read_profile(shipped)
    path = Path(name_or_file)
    if path.is_file():
        return read_profile(path)
    names = ", ".join(p.stem for p in sorted(SHIPPED.glob("*.json")))
    raise HarnessError(
        f"training.profile {name_or_file}: no shipped profile of that name and no such file "
        f"(shipped: {names}; make one with harness calibrate)"
    )


def read_profile(path: Path) -> Profile:
    document = read_json(path)  # bounded in size: a profile may come with a pull request
    if document is None:
        raise HarnessError(f"{path}: cannot read the profile: no such file")
    if document.get("format") != FORMAT:
        raise HarnessError(f'{path}: not a harness profile (no "format": "{FORMAT}")')
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise HarnessError(
            f"{path}: profile format version {version}; this harness reads version "
            f"{FORMAT_VERSION} (re-run harness calibrate)"
        )
    try:
        settings = ProfileSettings(**document["settings"])
        step_s = [float(t) for t in document.get("step_s") or []]
        mean = float(document["mean_step_s"])
        if not all(t > 0 and math.isfinite(t) for t in [mean, *step_s]):
            raise ValueError("step times must be positive and finite")
        flops = document.get("flops_per_batch")
        if flops is not None and not (isinstance(flops, int | float) and 0 < flops < math.inf):
            raise ValueError("flops_per_batch must be a positive number")
        return Profile(
            name=str(document["name"]),
            device=str(document["device"]),
            settings=settings,
            step_s=step_s,
            mean_step_s=mean,
            flops_per_batch=None if flops is None else float(flops),
            how=str(document.get("how", "")),
            created=str(document.get("created", "")),
            software=dict(document.get("software") or {}),
            source=str(path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: malformed profile: {exc}") from None


def scenario_settings(scenario: Scenario, classes: int, precision: str) -> ProfileSettings:
    training = scenario.training
    return ProfileSettings(
        batch_size=scenario.pipeline.batch_size,
        crop=scenario.pipeline.crop,
        width=training.model.width,
        depth=training.model.depth,
        classes=classes,
        precision=precision,
        optimizer=training.optimizer,
        workload="records" if scenario.dataset.kind == "records" else "unet",
    )


def training_flops(settings: ProfileSettings) -> float:
    """FLOPs of one training step's forward and backward pass on one batch (the optimiser's
    elementwise update is negligible beside the convolutions and is not counted)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from harness.train.unet import UNet

    s = settings
    with torch.device("meta"):
        model = UNet(s.classes, s.width, s.depth)
        images = torch.empty(s.batch_size, 3, s.crop, s.crop)
        masks = torch.zeros(s.batch_size, s.crop, s.crop, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images).float(), masks).backward()
    return float(counter.get_total_flops())


@dataclass(frozen=True)
class ComputeTimes:
    """Where an emulated run's compute times come from, as recorded in its manifest."""

    profile: Profile
    scale: float  # 1.0, or the FLOPs ratio scenario / profile
    scenario_flops: float | None

    def document(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "profile_file": self.profile.source,
            "profile_device": self.profile.device,
            "profile_mean_step_s": self.profile.mean_step_s,
            "profile_samples": len(self.profile.step_s),
            "scaling": "flops" if self.scenario_flops is not None else "none",
            "scale": self.scale,
            "scenario_flops_per_batch": self.scenario_flops,
            "profile_flops_per_batch": self.profile.flops_per_batch,
        }

    def sampler(self, seed: int) -> StepTimes:
        return StepTimes(self, seed)


class StepTimes(TimeDraws):
    """Compute times for successive steps: drawn at random (seeded) from the profile's measured
    times, or its mean where it has none; times the scale."""

    def __init__(self, times: ComputeTimes, seed: int) -> None:
        super().__init__(times.profile.step_s, times.profile.mean_step_s, times.scale, seed)


def check_profile(scenario: Scenario) -> None:
    """What ``harness validate`` can tell about an emulated scenario's profile without its data:
    that it exists, reads, and (without FLOPs scaling) matches the scenario."""
    training = scenario.training
    if training.compute != "emulated" or training.profile is None:
        return
    profile = resolve_profile(training.profile)
    if training.profile_scaling == "none":
        _refuse_differences(profile, scenario_settings(scenario, 0, ""))


def _refuse_differences(profile: Profile, wanted: ProfileSettings) -> None:
    differences = profile.settings.differences(wanted)
    if differences:
        raise HarnessError(
            f"training.profile {profile.name} was measured for other settings: "
            f"{'; '.join(differences)} (calibrate one for this scenario with harness "
            "calibrate, or set training.profile_scaling: flops)"
        )


def compute_times(scenario: Scenario, classes: int) -> ComputeTimes:
    """The scenario's profile, checked against its settings; refused on a difference unless
    ``profile_scaling: flops``."""
    training = scenario.training
    assert training.profile is not None  # the scenario's validation sees to it
    profile = resolve_profile(training.profile)
    wanted = scenario_settings(scenario, classes, profile.settings.precision)
    if training.profile_scaling == "none":
        _refuse_differences(profile, wanted)
        return ComputeTimes(profile, 1.0, None)
    if not profile.flops_per_batch:
        raise HarnessError(
            f"training.profile {profile.name} records no FLOPs per batch: it cannot be scaled"
        )
    flops = training_flops(wanted)
    return ComputeTimes(profile, flops / profile.flops_per_batch, flops)


def calibrate(
    scenario: Scenario,
    classes: int,
    *,
    name: str,
    steps: int,
    warmup: int,
    progress: bool = False,
) -> Profile:
    """Time the scenario's real training steps on batches already in memory (random pixels and
    classes: the time of a step does not depend on them), on its device and precision."""
    import torch

    from harness.env import environment_software, processor_name
    from harness.train.distributed import Ranks
    from harness.train.loop import real_step, resolve_device
    from harness.train.model import blank_batch, build_model, cpu_threads_for, set_cpu_threads

    device = resolve_device(scenario.training.device, scenario.training.precision)
    torch.manual_seed(scenario.training.seed)
    set_cpu_threads(scenario, device)
    model, optimizer = build_model(scenario, classes, device, Ranks())
    step = real_step(model, optimizer, device)
    batch = blank_batch(scenario)
    generator = torch.Generator().manual_seed(scenario.training.seed)
    batch.image.copy_(torch.randint(0, 256, batch.image.shape, generator=generator))
    batch.mask.copy_(torch.randint(0, classes, batch.mask.shape, generator=generator))
    if device.is_cuda:
        batch = batch.pin_memory()
    times = []
    for index in bar(range(warmup + steps), description="calibrate", unit="step", enabled=progress):
        started = time.perf_counter()
        step(batch)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    settings = scenario_settings(scenario, classes, device.precision)
    if device.is_cuda:
        where = torch.cuda.get_device_name(device.torch_device)
    else:
        where = f"cpu: {processor_name()} ({cpu_threads_for(scenario)} threads)"
    return Profile(
        name=name,
        device=where,
        settings=settings,
        step_s=[round(t, 6) for t in times],
        mean_step_s=float(np.mean(times)),
        flops_per_batch=training_flops(settings),
        how=(
            f"measured by harness calibrate: {steps} real training steps after {warmup} warm-up "
            "steps on one batch kept in memory (copied to the device each step)"
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        software=environment_software(),
    )


def write_profile(profile: Profile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write((json.dumps(profile.document(), indent=2) + "\n").encode())
    return path
