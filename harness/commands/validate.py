"""``harness validate FILE...``: scenario, suite and self-check plan files alike;
``harness validate --schema``: the JSON Schema of a scenario file, for editors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands import override_arg
from harness.errors import ExitCode, HarnessError, ScenarioError
from harness.text import visible

HELP = "check scenario and suite files (--schema: print a scenario's JSON Schema)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="scenario or suite YAML files")
    override_arg(parser)
    parser.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON Schema of a scenario file (for editors' YAML language servers)",
    )


def run(args: argparse.Namespace) -> int:
    """Every problem of every file, then exit 2; else one ``ok`` line per scenario. A pipeline
    setting its backend ignores is a warning on stderr (the exit code stays 0)."""
    from harness import scenario as scenarios
    from harness.pipeline import ignored_settings

    if args.schema:
        if args.files:
            raise HarnessError("--schema prints the schema of every scenario: give no files")
        print(json.dumps(scenarios.scenario_json_schema(), indent=1))
        return ExitCode.OK
    if not args.files:
        raise HarnessError("give one or more scenario or suite files (or --schema)")
    problems: list[str] = []
    lines: list[str] = []
    for file in args.files:
        try:
            # Read first: a hostile file is answered before anything heavy is imported.
            if "runs" in scenarios.read_yaml(Path(file)):  # a self-check plan
                from harness.selfcheck import load_plan, planned_scenarios

                plan = load_plan(Path(file))
                planned = planned_scenarios(Path(file), plan, args.override)
                runs = sum(len(p.backends) for p, _ in planned)
                lines.append(f"ok {file}: self-check plan {plan.name} ({runs} runs)")
                continue
            for item in scenarios.load_scenarios([file], args.override):
                s = item.scenario
                if s.training.compute == "emulated":  # only these name a profile to check
                    from harness.train.profiles import check_profile

                    try:
                        check_profile(s)
                    except HarnessError as exc:
                        problems.append(f"{item.file}: {exc}")
                        continue
                # a setting that would do nothing: said, not refused
                for line in ignored_settings(s):
                    print(visible(f"warning: {item.file}: {line}"), file=sys.stderr)
                mode = f", {s.pipeline.mode}" if s.pipeline.mode else ""
                lines.append(f"ok {item.file}: {s.name} ({s.dataset.kind}{mode})")
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    print("\n".join(visible(line) for line in lines))  # file names are the user's text
    return ExitCode.OK
