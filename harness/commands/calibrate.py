"""``harness calibrate SCENARIO --out FILE``: measure a compute profile for emulated runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import override_arg
from harness.errors import ExitCode, HarnessError
from harness.scenario import Scenario

HELP = "time the scenario's real training steps (no storage) and write a compute profile"


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
