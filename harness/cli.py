"""Command-line interface: parse, call, print. No logic lives here.

Every command that takes a scenario also takes a suite file and ``-o key.path=value`` overrides.
A ``HarnessError`` becomes one line per problem on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.errors import EXIT_BAD_INPUT, HarnessError, ScenarioError


def _scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario or suite YAML files")
    _override_arg(parser)


def _override_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="set a field of every scenario, e.g. -o pipeline.workers=4 (repeatable)",
    )


def _results_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="where run folders are written (default: ./results)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Benchmark and validate storage-to-GPU throughput with real training loops.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check scenario and suite files")
    _scenario_args(validate)

    show = commands.add_parser("show", help="print the resolved scenario (defaults filled in)")
    _scenario_args(show)

    datagen = commands.add_parser(
        "datagen", help="generate each scenario's dataset, or index a bring-your-own folder"
    )
    _scenario_args(datagen)
    datagen.add_argument(
        "--force", action="store_true", help="regenerate even where an up-to-date dataset exists"
    )

    cache = commands.add_parser("cache", help="decode videos once into the frame cache")
    _scenario_args(cache)
    cache.add_argument(
        "--force", action="store_true", help="rebuild even where a complete cache exists"
    )

    for name, text in (
        ("run", "run each scenario's training loop with its collectors; write results/<run-id>/"),
        ("suite", "prepare the data of a suite (datagen, cache), then run all its scenarios"),
    ):
        command = commands.add_parser(name, help=text)
        _scenario_args(command)
        _results_arg(command)
        command.add_argument(
            "--repeat",
            type=int,
            default=1,
            metavar="N",
            help="run each scenario N times (for noise-aware comparisons)",
        )
        command.add_argument(
            "--strict", action="store_true", help="exit 1 when a scenario's thresholds are not met"
        )
        command.add_argument("--quiet", action="store_true", help="no progress or summary lines")
        if name == "suite":
            command.add_argument(
                "--report",
                type=Path,
                default=None,
                metavar="DIR",
                help="where the suite's report.html and report.pdf go "
                "(default: reports/<UTC time>-<suite>)",
            )

    selfcheck = commands.add_parser(
        "selfcheck",
        help="generate a small dataset and run every scenario with every backend; print a table",
    )
    selfcheck.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU plan (1080p video, U-Net 64, bf16; ~4 min on one GPU); refused without one",
    )
    selfcheck.add_argument(
        "--plan", type=Path, default=None, metavar="FILE", help="a self-check plan YAML instead"
    )
    _override_arg(selfcheck)
    selfcheck.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="measured seconds per run (default: each scenario's own)",
    )
    _results_arg(selfcheck)
    selfcheck.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the table and report go (default: reports/<UTC time>-selfcheck)",
    )
    selfcheck.add_argument("--quiet", action="store_true", help="no progress lines")

    report = commands.add_parser(
        "report", help="write report.html and report.pdf from run folders (or folders of runs)"
    )
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_OR_FOLDER")
    report.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="where report.html and report.pdf are written (default: ./reports)",
    )

    compare = commands.add_parser(
        "compare",
        help="judge CURRENT against BASELINE, metric by metric; exit 1 on a regression",
        description="BASELINE and CURRENT are each a run folder, a folder of runs (repeats, or a "
        "suite's results: grouped by scenario), a summary.json, or a saved baseline's name.",
    )
    compare.add_argument("baseline", metavar="BASELINE")
    compare.add_argument("current", metavar="CURRENT")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=PCT",
        help="a metric's tolerance in %% of the baseline, e.g. samples_per_s=5 (repeatable; "
        "overrides the scenario's thresholds.tolerance_pct and the defaults)",
    )
    compare.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        metavar="A",
        help="significance level of the Mann-Whitney U test on repeats (default 0.05)",
    )
    compare.add_argument(
        "--allow-hardware-mismatch",
        action="store_true",
        help="compare runs from different hardware (refused by default)",
    )

    baseline = commands.add_parser(
        "baseline", help="save runs as a named baseline for this hardware, or list baselines"
    )
    actions = baseline.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save", help="keep RUN (a run folder or a folder of runs) as baseline NAME"
    )
    save.add_argument("run", type=Path, metavar="RUN")
    save.add_argument("--name", required=True, metavar="NAME")
    actions.add_parser("list", help="list saved baselines (./baselines or $HARNESS_BASELINES)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ScenarioError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "interrupted: finished files are kept; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


def _run(args: argparse.Namespace, loaded: list) -> int:
    from harness.run import run_scenario

    if args.repeat < 1:
        raise HarnessError(f"--repeat {args.repeat}: expected 1 or more")
    if args.command == "suite":
        from harness.data import prepare_datasets
        from harness.data.cache import build_caches

        scenarios = [item.scenario for item in loaded]
        prepare_datasets(scenarios)
        build_caches(scenarios)
    command = ["harness", *sys.argv[1:]]
    worst = 0
    folders: list[Path] = []
    for item in loaded:
        for index in range(args.repeat):
            repeat = (index + 1, args.repeat) if args.repeat > 1 else None
            outcome = run_scenario(
                item, results_root=args.results, command=command, repeat=repeat, quiet=args.quiet
            )
            if outcome.folder is not None:  # under torchrun only rank 0 has the folder
                folders.append(outcome.folder)
            if not outcome.complete:
                print(
                    f"error: {item.scenario.name}: {outcome.reason}; partial results kept in "
                    f"{outcome.folder}",
                    file=sys.stderr,
                )
                _suite_report(args, folders)  # a stopped suite still reports what it has
                return outcome.exit_code
            verdicts = (outcome.summary or {}).get("thresholds", [])
            if args.strict and any(v["pass"] is False for v in verdicts):
                worst = 1
    _suite_report(args, folders)
    return worst


def _suite_report(args: argparse.Namespace, folders: list[Path]) -> None:
    """``harness suite`` ends with the report of its runs (printed even with --quiet)."""
    if args.command != "suite" or not folders:
        return
    from harness.report import write_report

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.report or Path("reports") / f"{stamp}-{Path(args.files[0]).stem}"
    html, pdf = write_report(folders, out)
    print(f"report: {html}\nreport: {pdf}")


def _validate(args: argparse.Namespace) -> int:
    """Scenario, suite and self-check plan files alike: every problem of every file, then exit 2."""
    from harness import scenario as scenarios
    from harness.selfcheck import is_plan, load_plan, planned_scenarios

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
                mode = f", {s.pipeline.mode}" if s.pipeline.mode else ""
                lines.append(f"ok {item.file}: {s.name} ({s.dataset.kind}{mode})")
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    print("\n".join(lines))
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from harness import scenario as scenarios

    if args.command == "report":
        from harness.report import write_report

        html, pdf = write_report(args.runs, args.out)
        print(f"report: {html}\nreport: {pdf}")
        return 0
    if args.command == "compare":
        from harness.baselines import compare_command, parse_tolerances

        return compare_command(
            args.baseline,
            args.current,
            as_json=args.json,
            tolerances=parse_tolerances(args.tolerance),
            allow_hardware_mismatch=args.allow_hardware_mismatch,
            alpha=args.alpha,
        )
    if args.command == "baseline":
        from harness.baselines import baseline_list_command, baseline_save_command

        if args.baseline_command == "save":
            return baseline_save_command(args.run, args.name)
        return baseline_list_command()

    if args.command == "selfcheck":
        from harness.selfcheck import run_selfcheck

        if args.duration is not None and args.duration <= 0:
            raise HarnessError(f"--duration {args.duration}: expected seconds above 0")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return run_selfcheck(
            gpu=args.gpu,
            plan_file=args.plan,
            overrides=args.override,
            duration_s=args.duration,
            results_root=args.results,
            report_dir=args.report or Path("reports") / f"{stamp}-selfcheck",
            quiet=args.quiet,
        )

    if args.command == "validate":
        return _validate(args)

    loaded = scenarios.load_scenarios(args.files, args.override)
    if args.command == "show":
        for index, item in enumerate(loaded):
            if index:
                print("---")
            print(f"# {item.file}")
            print(scenarios.scenario_to_yaml(item.scenario), end="")
        return 0
    if args.command == "datagen":
        from harness.data import prepare_datasets

        prepare_datasets([item.scenario for item in loaded], force=args.force)
        return 0
    if args.command == "cache":
        from harness.data.cache import build_caches

        build_caches([item.scenario for item in loaded], force=args.force)
        return 0
    if args.command in ("run", "suite"):
        return _run(args, loaded)
    raise AssertionError(f"unhandled command {args.command}")
