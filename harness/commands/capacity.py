"""``harness capacity SCENARIO...``: how many emulated accelerators this storage and this client
feed, and what stops the next one.

Every probe is a real run folder (emulated, cold page cache, ``--probe-s`` measured seconds after
the warm-up steps); ``harness.capacity`` decides which count to probe next and names the limiter.
``capacity.json`` is rewritten after every probe, so an interrupted search keeps what it found
and says where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.commands import override_arg, results_arg, utc_stamp
from harness.errors import HarnessError

HELP = "search the most emulated accelerators the storage keeps busy; name what limits it"
CONTEXT_METRICS = (
    "samples_per_s",
    "busy_pct",
    "busy_pct_min",
    "data_wait_pct",
    "barrier_pct",
    "read_MBps",
    "requested_MBps",
    "cpu_pct",
    "fetch_latency_p50_ms",
    "fetch_latency_p99_ms",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="SCENARIO", help="scenario or suite files")
    override_arg(parser)
    parser.add_argument("--min-busy", type=float, default=90.0, metavar="PCT")
    parser.add_argument("--min-busy-each", type=float, default=85.0, metavar="PCT")
    parser.add_argument("--max-accelerators", type=int, default=64, metavar="N")
    parser.add_argument(
        "--probe-s", type=float, default=10.0, metavar="S", help="measured seconds per probe"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="K",
        help="probes of the last passing and first failing count, judged on their median",
    )
    parser.add_argument(
        "--ceiling-s", type=float, default=10.0, metavar="S", help="seconds of the read ceiling"
    )
    results_arg(parser)
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    parser.add_argument("--report", type=Path, default=None, metavar="DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress lines of the runs")


def run(args: argparse.Namespace) -> int:
    from harness.scenario import load_scenarios

    if args.repeat < 1 or args.max_accelerators < 1 or args.probe_s <= 0:
        raise HarnessError("--repeat and --max-accelerators must be 1 or more, --probe-s above 0")
    loaded = load_scenarios(args.files, _overrides(args))
    for item in loaded:
        if item.scenario.training.profile is None:
            raise HarnessError(
                f"{item.file}: capacity emulates accelerators: set training.profile "
                "(harness profiles lists the shipped ones), e.g. -o training.profile=NAME"
            )
    out = args.json or Path("reports") / f"{utc_stamp()}-capacity" / "capacity.json"
    document: dict[str, Any] = {
        "format": "harness-capacity",
        "format_version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": ["harness", *sys.argv[1:]],
        "thresholds": {
            "min_busy_pct": args.min_busy,
            "min_busy_pct_each": args.min_busy_each,
            "max_accelerators": args.max_accelerators,
            "probe_s": args.probe_s,
            "repeat": args.repeat,
        },
        "complete": False,
        "stopped": None,
        "scenarios": [],
    }
    folders: list[Path] = []
    code = 0
    try:
        for item in loaded:
            entry = _search(item, args, document, out, folders)
            print(_sentence(entry))
    except KeyboardInterrupt:
        document["stopped"] = "interrupted by SIGINT"
        code = 130
    except _Stopped as stop:
        document["stopped"], code = stop.reason, stop.code
    else:
        document["complete"] = True
    _write(document, out)
    print(f"capacity: {out}")
    if args.report is not None and folders:
        from harness.report import write_report

        html, pdf = write_report([*folders, out], args.report)
        print(f"report: {html}\nreport: {pdf}")
    return code


class _Stopped(Exception):
    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


def _search(item: Any, args: argparse.Namespace, document: dict, out: Path, folders: list) -> dict:
    from harness.capacity import Probe, Search, name_limiter
    from harness.ceiling import read_ceiling
    from harness.run import prepare_run, run_scenario
    from harness.scenario import load_scenario

    scenario = item.scenario
    prepared = prepare_run(item)
    readers = max(1, scenario.pipeline.workers) * max(1, min(args.max_accelerators, 8))
    ceiling = read_ceiling(prepared.source.data_files(), readers, args.ceiling_s)
    from harness.data.parallel import available_cpus

    cores = available_cpus()
    search = Search(args.min_busy, args.min_busy_each, args.max_accelerators, args.repeat)
    assert prepared.compute_times is not None
    entry: dict[str, Any] = {
        "scenario": scenario.name,
        "scenario_file": str(item.file),
        "profile": prepared.compute_times.document(),
        "ceiling_MBps": round(ceiling.MBps, 3),
        "ceiling_how": ceiling.how,
        "client_cores": cores,
        "max_accelerators": None,
        "capped": False,
        "probes": [],
        "seconds": None,
    }
    document["scenarios"].append(entry)
    print(
        f"{scenario.name}: read ceiling {ceiling.MBps:.1f} MB/s ({ceiling.how}); "
        f"profile {prepared.compute_times.profile.name} x{prepared.compute_times.scale:.4g}"
    )
    started = time.monotonic()
    command = ["harness", *sys.argv[1:]]
    while (count := search.next_count()) is not None:
        probe_item = load_scenario(item.file, [*_overrides(args), f"training.accelerators={count}"])
        outcome = run_scenario(
            probe_item, results_root=args.results, command=command, quiet=args.quiet, launch=True
        )
        summary = outcome.summary or {}
        metrics = summary.get("metrics", {})
        probe = Probe(
            count,
            _value(metrics, "busy_pct"),
            _value(metrics, "busy_pct_min"),
            outcome.complete,
            {name: _value(metrics, name) for name in CONTEXT_METRICS},
            str(outcome.folder) if outcome.folder else None,
        )
        search.record(probe)
        if outcome.folder is not None:
            folders.append(outcome.folder)
        passed = (
            outcome.complete
            and probe.busy_pct is not None
            and probe.busy_pct >= args.min_busy
            and (probe.busy_pct_min or 0) >= args.min_busy_each
        )
        page_cache = summary.get("page_cache") or {}
        limiter = name_limiter(
            metrics,
            passed=passed,
            ceiling_MBps=ceiling.MBps,
            ceiling_how=ceiling.how,
            cores=cores,
            dataset_bytes=page_cache.get("dataset_bytes"),
            page_cache_bytes=page_cache.get("ram_bytes"),
        )
        entry["probes"].append(
            {
                "accelerators": count,
                "busy_pct": probe.busy_pct,
                "busy_pct_min": probe.busy_pct_min,
                "complete": outcome.complete,
                "verdict": "pass" if passed else "fail",
                "limiter": limiter.name,
                "evidence": limiter.evidence,
                "page_cache_hit_share": _hit_share(probe.metrics),
                "metrics": probe.metrics,
                "run": probe.run,
                "reason": outcome.reason,
            }
        )
        entry["max_accelerators"], entry["capped"] = search.answer, search.capped
        entry["seconds"] = round(time.monotonic() - started, 1)
        _write(document, out)
        print(_probe_line(entry["probes"][-1]))
        if outcome.exit_code in (130, 143):
            raise _Stopped(f"interrupted during the probe of {count} accelerators", 130)
        if outcome.exit_code == 2:
            raise _Stopped(f"probe of {count} accelerators refused: {outcome.reason}", 2)
    last_fail = next((p for p in entry["probes"] if p["accelerators"] == search.bracket()[1]), None)
    entry["limiter"] = (last_fail or entry["probes"][-1])["limiter"]
    entry["limiter_evidence"] = (last_fail or entry["probes"][-1])["evidence"]
    return entry


def _overrides(args: argparse.Namespace) -> list[str]:
    """The user's overrides, then what every probe is: emulated, timed, cold."""
    return [
        *args.override,
        "training.compute=emulated",
        "training.steps=null",
        f"training.duration_s={args.probe_s}",
        "pipeline.page_cache=cold",
    ]


def _value(metrics: dict[str, Any], name: str) -> float | None:
    entry = metrics.get(name) or {}
    return entry.get("value")


def _hit_share(metrics: dict[str, float | None]) -> float | None:
    read, requested = metrics.get("read_MBps"), metrics.get("requested_MBps")
    if read is None or not requested:
        return None
    return round(max(0.0, 1 - read / requested), 4)


def _probe_line(probe: dict[str, Any]) -> str:
    m = probe["metrics"]

    def show(name: str, unit: str, digits: int = 1) -> str:
        value = m.get(name)
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    return (
        f"  {probe['accelerators']:3d} accelerators: busy {show('busy_pct', ' %')} "
        f"(min {show('busy_pct_min', ' %')}), {show('samples_per_s', ' samples/s')}, "
        f"read {show('read_MBps', ' MB/s')}, CPU {show('cpu_pct', ' %', 0)} -> "
        f"{probe['verdict']}; limiter: {probe['limiter']} ({probe['evidence']})"
    )


def _sentence(entry: dict[str, Any]) -> str:
    count = entry["max_accelerators"]
    bound = "at least " if entry["capped"] else ""
    device = entry["profile"]["profile_device"]
    return (
        f"{entry['scenario']}: this storage and this client feed {bound}{count} emulated "
        f"{device} accelerator(s) (profile {entry['profile']['profile']}); limited by "
        f"{entry.get('limiter', 'n/a')}: {entry.get('limiter_evidence', '')} "
        f"[search took {entry['seconds']} s]"
    )


def _write(document: dict[str, Any], out: Path) -> None:
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(out)
