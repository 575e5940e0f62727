"""``harness validate FILE...``: scenario, suite and self-check plan files alike."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import scenario_args
from harness.errors import HarnessError, ScenarioError

HELP = "check scenario and suite files"


def configure(parser: argparse.ArgumentParser) -> None:
    scenario_args(parser)


def run(args: argparse.Namespace) -> int:
    """Every problem of every file, then exit 2; else one ``ok`` line per scenario."""
    from harness import scenario as scenarios
    from harness.selfcheck import is_plan, load_plan, planned_scenarios
    from harness.train.profiles import check_profile

    problems: list[str] = []
    lines: list[str] = []
    for file in args.files:
        try:
            if is_plan(Path(file)):
                plan = load_plan(Path(file))
                planned = planned_scenarios(Path(file), plan, args.override)
                runs = sum(len(p.backends) for p, _ in planned)
                lines.append(f"ok {file}: self-check plan {plan.name} ({runs} runs)")
                continue
            for item in scenarios.load_scenarios([file], args.override):
                s = item.scenario
                try:
                    check_profile(s)
                except HarnessError as exc:
                    problems.append(f"{item.file}: {exc}")
                    continue
                mode = f", {s.pipeline.mode}" if s.pipeline.mode else ""
                lines.append(f"ok {item.file}: {s.name} ({s.dataset.kind}{mode})")
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    print("\n".join(lines))
    return 0
