"""``harness run FILE...``: each scenario's training loop with its collectors (``suite`` too)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import results_arg, scenario_args, utc_stamp
from harness.errors import ExitCode, HarnessError

MAX_REPEAT = 1000

HELP = "run each scenario's training loop with its collectors; write results/<run-id>/"


def configure(parser: argparse.ArgumentParser) -> None:
    scenario_args(parser)
    results_arg(parser)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help=f"run each scenario N times, at most {MAX_REPEAT} (for noise-aware comparisons)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a scenario's thresholds are not met"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress or summary lines")
    parser.add_argument(
        "--force",
        action="store_true",
        help="run scenarios this machine is too small for (far more workers than cores, more "
        "memory in flight than it has): a warning instead of a refusal",
    )
    from harness.commands.export import export_args
    from harness.export import EXPORTERS

    parser.add_argument(
        "--export",
        action="append",
        default=[],
        choices=list(EXPORTERS),
        metavar="NAME",
        help=f"at the end, export the runs ({', '.join(EXPORTERS)}; repeatable), as "
        "`harness export --to NAME` does",
    )
    export_args(parser, prefix="export-")


def run(args: argparse.Namespace) -> int:
    return run_scenarios(args, report=None)


def run_scenarios(args: argparse.Namespace, report: Path | None) -> int:
    """Run every scenario ``--repeat`` times; with ``report``, end with the report of the runs
    (also when a run stops early: a stopped suite still reports what it has)."""
    if not 1 <= args.repeat <= MAX_REPEAT:
        raise HarnessError(
            f"--repeat {args.repeat}: expected 1 to {MAX_REPEAT} (each repeat is a whole run; "
            "compare's statistics need a few dozen at most)"
        )
    if args.export:
        from harness.export import exporter

        for name in args.export:  # a missing package stops the command before any work
            exporter(name)
    from harness.pipeline import ignored_settings
    from harness.run import run_scenario
    from harness.scenario import load_scenarios
    from harness.scenario.machine import check_machine
    from harness.summary_lines import summary_lines

    loaded = load_scenarios(args.files, args.override)
    check_machine(loaded, force=args.force)
    for item in loaded:  # a setting that would do nothing: said, not refused (as in validate)
        for line in ignored_settings(item.scenario):
            print(f"warning: {item.file}: {line}", file=sys.stderr)
    if report is not None:
        from harness.data import prepare_datasets
        from harness.data.cache import build_caches

        scenarios = [item.scenario for item in loaded]
        prepare_datasets(scenarios)
        build_caches(scenarios)
    command = ["harness", *sys.argv[1:]]
    worst = ExitCode.OK
    folders: list[Path] = []
    for item in loaded:
        for index in range(args.repeat):
            repeat = (index + 1, args.repeat) if args.repeat > 1 else None
            outcome = run_scenario(
                item, results_root=args.results, command=command, repeat=repeat, quiet=args.quiet
            )
            if outcome.folder is not None:  # under torchrun only rank 0 has the folder
                folders.append(outcome.folder)
                if outcome.summary is not None and not args.quiet:
                    print("\n".join(summary_lines(outcome.summary, outcome.folder)))
            if not outcome.complete:
                print(
                    f"error: {item.scenario.name}: {outcome.reason}; partial results kept in "
                    f"{outcome.folder}",
                    file=sys.stderr,
                )
                _report(folders, report)
                _export(folders, args, report)
                return outcome.exit_code
            verdicts = outcome.summary.thresholds if outcome.summary is not None else []
            if args.strict and any(v.passed is False for v in verdicts):
                worst = ExitCode.FAILED
    _report(folders, report)
    _export(folders, args, report)
    return worst


def _report(folders: list[Path], out: Path | None) -> None:
    """The report of a suite's runs (printed even with --quiet)."""
    if out is None or not folders:
        return
    from harness.report import write_report

    html, pdf = write_report(folders, out)
    print(f"report: {html}\nreport: {pdf}")


def _export(folders: list[Path], args: argparse.Namespace, report: Path | None) -> None:
    """``--export NAME``: the runs (partial ones too) to each exporter named, with the report."""
    if not any((folder / "summary.json").exists() for folder in folders) or not args.export:
        return
    from harness.export import ExportOptions, export_runs

    with_report = report if report is not None and (report / "report.html").exists() else None
    options = ExportOptions(experiment=args.export_experiment, report=with_report)
    summarised = [folder for folder in folders if (folder / "summary.json").exists()]
    for name in args.export:
        for line in export_runs(summarised, name, args.export_target, options):
            print(line)


def default_report_dir(files: list[str], kind: str | None = None) -> Path:
    """``reports/<UTC time>-<first file's stem or kind>``."""
    return Path("reports") / f"{utc_stamp()}-{kind or Path(files[0]).stem}"
