"""``harness calibrate SCENARIO --out FILE``: measure a compute profile for emulated runs;
``harness calibrate --preprocess SCENARIO --out FILE``: a preprocessing profile (the real
pipeline's per-sample decode, crop and collate on this machine, without the reads)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import override_arg
from harness.errors import ExitCode, HarnessError
from harness.scenario import LoadedScenario, Scenario

HELP = (
    "time the scenario's real training steps (no storage) and write a compute profile; "
    "--preprocess: its per-sample preprocessing, a preprocessing profile"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="SCENARIO", help="a scenario YAML file")
    override_arg(parser)
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="where the profile is written"
    )
    parser.add_argument(
        "--name", default=None, help="the profile's name (default: the file's stem)"
    )
    parser.add_argument(
        "--preprocess",
        action="store_true",
        help="measure the real pipeline's per-sample preprocessing (decode, crop, collate "
        "share; the reads left out) on this machine, for pipeline.preprocess emulated",
    )
    parser.add_argument(
        "--samples", type=int, default=200, metavar="N", help="--preprocess: samples timed"
    )
    parser.add_argument(
        "--steps", type=int, default=30, metavar="N", help="timed steps (default 30)"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, metavar="N", help="untimed steps first (default 5)"
    )


def run(args: argparse.Namespace) -> int:
    from harness.scenario import load_scenarios
    from harness.train.profiles import calibrate, write_profile

    if args.steps < 1 or args.warmup < 0:
        raise HarnessError("--steps must be 1 or more and --warmup 0 or more")
    loaded = load_scenarios([args.file], args.override)
    if len(loaded) != 1:
        raise HarnessError(f"{args.file}: calibrate takes one scenario, not a suite")
    scenario = loaded[0].scenario
    if args.preprocess:
        return _calibrate_preprocess(loaded[0], args)
    profile = calibrate(
        scenario,
        _classes(scenario),
        name=args.name or args.out.stem,
        steps=args.steps,
        warmup=args.warmup,
        progress=sys.stderr.isatty(),
    )
    write_profile(profile, args.out)
    print(f"{profile.summary_line()}\nprofile: {args.out}")
    return ExitCode.OK


def _classes(scenario: Scenario) -> int:
    """The classes the model predicts: the dataset's index where it exists, else the scenario's
    setting (calibrating needs no data)."""
    from harness.data.manifest import read_manifest

    manifest = read_manifest(Path(scenario.dataset.path))
    if manifest is not None and manifest.get("classes"):
        return int(manifest["classes"])
    generate = scenario.dataset.generate
    if scenario.dataset.kind == "records":
        raise HarnessError(
            f"{scenario.name}: a records scenario trains no model, so there is nothing to "
            "calibrate: its profile carries MLPerf Storage's computation_time"
        )
    classes = getattr(generate, "classes", None)
    return int(classes if classes is not None else scenario.dataset.classes or 0)


def _calibrate_preprocess(loaded: LoadedScenario, args: argparse.Namespace) -> int:
    """Time the scenario's real preprocessing per sample on its data (which must be there)."""
    import time

    from harness.data.cache import read_cache_manifest
    from harness.data.index import dataset_manifest
    from harness.data.parallel import available_cpus
    from harness.env import environment_software, processor_name
    from harness.pipeline.plan import SamplePlan
    from harness.pipeline.preprocess import (
        PreprocessProfile,
        measure_preprocessing,
        source_settings,
        write_preprocess_profile,
    )
    from harness.pipeline.sources import build_source

    if args.samples < 1:
        raise HarnessError("--samples must be 1 or more")
    scenario = loaded.scenario
    pipeline = scenario.pipeline
    if pipeline.mode == "decoded":
        raise HarnessError(
            f"{loaded.file}: --preprocess: decoded video cannot be emulated (its reads go "
            "through the decoder); calibrate the frame cache (pipeline.mode cached)"
        )
    manifest = dataset_manifest(scenario.dataset, str(loaded.file))
    cache = read_cache_manifest(scenario) if pipeline.mode == "cached" else None
    source = build_source(scenario, manifest, cache)
    plan = SamplePlan(source.files, pipeline.crop, scenario.training.seed, pipeline.shuffle, 1)
    warmup = min(args.warmup, 20)
    times = measure_preprocessing(
        source, plan, pipeline.crop, pipeline.batch_size, args.samples, warmup
    )
    cores = available_cpus()
    profile = PreprocessProfile(
        name=args.name or args.out.stem,
        cpu=processor_name(),
        cores=cores,
        settings=source_settings(source, scenario.dataset.kind, pipeline.crop, pipeline.batch_size),
        sample_s=times,
        mean_sample_s=sum(times) / len(times),
        how=(
            f"measured by harness calibrate --preprocess: {len(times)} samples of "
            f"{loaded.file} after {warmup} warm-up samples, one process: each sample's load "
            "(read + decode + crop) minus its read (its bytes already in the page cache), plus "
            "its share of the batch's collate"
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        software=environment_software(),
    )
    write_preprocess_profile(profile, args.out)
    print(f"{profile.summary_line()}\npreprocessing profile: {args.out}")
    return ExitCode.OK
