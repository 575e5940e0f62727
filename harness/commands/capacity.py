"""``harness capacity SCENARIO...``: how many emulated accelerators this storage and this client
feed, and what stops the next one.

Every probe is a real run folder (emulated, cold page cache, ``--probe-s`` measured seconds after
the warm-up steps); ``harness.capacity`` decides which count to probe next and names the limiter.
``capacity.json`` is rewritten after every probe, so an interrupted search keeps what it found
and says where it stopped.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.capacity import PROBE_METRICS
from harness.commands import override_arg, results_arg, utc_stamp
from harness.errors import HarnessError

HELP = "search the most emulated accelerators the storage keeps busy; name what limits it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="SCENARIO", help="scenario or suite files")
    override_arg(parser)
    parser.add_argument(
        "--min-busy", type=float, default=90.0, metavar="PCT", help="mean busy %% to pass (90)"
    )
    parser.add_argument(
        "--min-busy-each",
        type=float,
        default=85.0,
        metavar="PCT",
        help="busy %% every accelerator must reach (85)",
    )
    parser.add_argument(
        "--max-accelerators", type=int, default=64, metavar="N", help="per host (default 64)"
    )
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
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="where capacity.json goes (default: reports/<UTC time>-capacity/capacity.json)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, metavar="DIR", help="also write the report there"
    )
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
    hosts = Hosts.from_environment(loaded[0].scenario.training.collective_timeout_s)
    out = args.json or Path("reports") / f"{utc_stamp()}-capacity" / "capacity.json"
    document: dict[str, Any] = {
        "format": "harness-capacity",
        "format_version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": ["harness", *sys.argv[1:]],
        "hosts": hosts.count,
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
            entry = _search(item, args, document, out, folders, hosts)
            if hosts.is_first:
                print(_sentence(entry))
    except KeyboardInterrupt:
        document["stopped"] = "interrupted by SIGINT"
        code = 130
    except _Stopped as stop:
        document["stopped"], code = stop.reason, stop.code
    else:
        document["complete"] = True
    finally:
        hosts.close()
    if not hosts.is_first:
        return code
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


@dataclass
class Hosts:
    """The controllers of a capacity search: this host alone, or one per host under an outer
    ``torchrun --nnodes H --nproc-per-node 1`` (the first decides; all probe together)."""

    count: int = 1
    rank: int = 0
    master: str = ""  # host:port of the outer torchrun's store; probes use the ports after it
    launches: int = 0

    @classmethod
    def from_environment(cls, timeout_s: float) -> Hosts:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if os.environ.get("LOCAL_WORLD_SIZE", "1") != "1":
            raise HarnessError(
                "harness capacity under torchrun: one controller per host "
                "(--nproc-per-node 1); it launches the accelerators itself"
            )
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        master = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        return cls(world, int(os.environ["RANK"]), master)

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def share(self, value: Any) -> Any:
        """The first host's ``value`` on every host."""
        if self.count == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every host's ``value`` on the first (an empty list on the others)."""
        if self.count == 1:
            return [value]
        import torch.distributed as dist

        found: list[Any] | None = [None] * self.count if self.is_first else None
        dist.gather_object(value, found, dst=0)
        return found or []

    def close(self) -> None:
        """Leave the controllers' group together (a host that just exits aborts the others)."""
        if self.count == 1:
            return
        import torch.distributed as dist

        try:
            dist.barrier()
        except RuntimeError:  # a host that is gone: leave anyway
            pass
        finally:
            dist.destroy_process_group()

    def nodes(self) -> Any:
        """A fresh rendezvous for the next launch of all hosts' ranks (None: this host only)."""
        if self.count == 1:
            return None
        from harness.run import Nodes

        self.launches += 1
        address, port = self.master.rsplit(":", 1)
        return Nodes(self.count, self.rank, f"{address}:{int(port) + self.launches}")


def _search(
    item: Any,
    args: argparse.Namespace,
    document: dict,
    out: Path,
    folders: list,
    hosts: Hosts,
) -> dict:
    from harness.capacity import Probe, Search
    from harness.ceiling import read_ceiling
    from harness.data.parallel import available_cpus
    from harness.run import prepare_run

    scenario = item.scenario
    prepared = prepare_run(item)
    readers = (
        max(1, scenario.pipeline.workers)
        * scenario.pipeline.read_threads
        * max(1, min(args.max_accelerators, 8))
    )
    ceiling = read_ceiling(prepared.source.data_files(), readers, args.ceiling_s)
    machines = hosts.gather(
        {"host": socket.gethostname(), "ceiling": ceiling, "cores": available_cpus()}
    )
    search = Search(args.min_busy, args.min_busy_each, args.max_accelerators, args.repeat)
    assert prepared.compute_times is not None
    entry: dict[str, Any] = {
        "scenario": scenario.name,
        "scenario_file": str(item.file),
        "profile": prepared.compute_times.document(),
        "hosts": [
            {
                "host": m["host"],
                "ceiling_MBps": round(m["ceiling"].MBps, 3),
                "ceiling_how": m["ceiling"].how,
                "client_cores": m["cores"],
            }
            for m in machines
        ],
        "ceiling_MBps": round(ceiling.MBps, 3),
        "ceiling_how": ceiling.how,
        "client_cores": available_cpus(),
        "workers": scenario.pipeline.workers,
        "max_accelerators": None,
        "capped": False,
        "probes": [],
        "seconds": None,
    }
    if hosts.is_first:
        document["scenarios"].append(entry)
        print(
            f"{scenario.name}: read ceiling {ceiling.MBps:.1f} MB/s ({ceiling.how}); profile "
            f"{prepared.compute_times.profile.name} x{prepared.compute_times.scale:.4g}"
            + (f"; {hosts.count} hosts" if hosts.count > 1 else "")
        )
    started = time.monotonic()
    while (count := hosts.share(search.next_count() if hosts.is_first else None)) is not None:
        outcome = _probe_here(item, args, prepared, count, hosts)
        if outcome.folder is not None:
            folders.append(outcome.folder)
        parts = hosts.gather(_host_result(outcome))
        if hosts.is_first:
            record = _combine(count, parts, entry, args)
            search.record(
                Probe(
                    count,
                    record["busy_pct"],
                    record["busy_pct_min"],
                    record["complete"],
                    record["metrics"],
                    record["run"],
                )
            )
            entry["probes"].append(record)
            entry["max_accelerators"], entry["capped"] = search.answer, search.capped
            entry["seconds"] = round(time.monotonic() - started, 1)
            _write(document, out)
            print(_probe_line(record))
        # Every host stops on the worst exit of any host, so that none waits for the others.
        worst = hosts.share(max(p["exit_code"] for p in parts) if hosts.is_first else None)
        if worst in (130, 143):
            raise _Stopped(f"interrupted during the probe of {count} accelerators", worst)
        if worst == 2:
            reason = outcome.reason or next((p["reason"] for p in parts if p["reason"]), "")
            raise _Stopped(f"probe of {count} accelerators refused: {reason}", 2)
    if hosts.is_first:
        failing = search.bracket()[1]
        last = next((p for p in entry["probes"] if p["accelerators"] == failing), None)
        last = last or entry["probes"][-1]
        entry["limiter"], entry["limiter_evidence"] = last["limiter"], last["evidence"]
    return entry


def _probe_here(
    item: Any, args: argparse.Namespace, prepared: Any, count: int, hosts: Hosts
) -> Any:
    """This host's share of one probe: ``count`` emulated accelerators, a real run folder."""
    from harness.run import prepare_run, run_accelerators
    from harness.scenario import load_scenario

    probe_item = load_scenario(item.file, [*_overrides(args), f"training.accelerators={count}"])
    return run_accelerators(
        prepare_run(probe_item),
        count,
        results_root=args.results,
        command=["harness", *sys.argv[1:]],
        repeat=None,
        quiet=args.quiet,
        nodes=hosts.nodes(),
    )


def _host_result(outcome: Any) -> dict[str, Any]:
    summary = outcome.summary
    return {
        "host": socket.gethostname(),
        "exit_code": outcome.exit_code,
        "complete": outcome.complete,
        "reason": outcome.reason,
        "run": str(outcome.folder) if outcome.folder else None,
        "metrics": {n: summary.value(n) if summary else None for n in PROBE_METRICS},
        "page_cache": summary.page_cache if summary else {},
    }


def _combine(
    count: int, parts: list[dict[str, Any]], entry: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """One probe of every host: busy % over all accelerators (each host runs ``count``), the
    lowest accelerator anywhere, rates summed; the limiter named per host, and overall that of
    the host whose slowest accelerator was slowest."""
    from harness.capacity import name_limiter

    def each(name: str) -> list[float]:
        return [p["metrics"][name] for p in parts if p["metrics"].get(name) is not None]

    busy, least = each("busy_pct"), each("busy_pct_min")
    complete = all(p["complete"] for p in parts)
    mean_busy = sum(busy) / len(busy) if busy and len(busy) == len(parts) else None
    lowest = min(least) if least and len(least) == len(parts) else None
    passed = (
        complete
        and mean_busy is not None
        and mean_busy >= args.min_busy
        and (lowest or 0) >= args.min_busy_each
    )
    hosts = []
    for part, machine in zip(parts, entry["hosts"], strict=True):
        metrics = {name: {"value": v} for name, v in part["metrics"].items()}
        limiter = name_limiter(
            metrics,
            passed=passed,
            ceiling_MBps=machine["ceiling_MBps"],
            ceiling_how=machine["ceiling_how"],
            cores=machine["client_cores"],
            dataset_bytes=part["page_cache"].get("dataset_bytes"),
            page_cache_bytes=part["page_cache"].get("ram_bytes"),
            accelerators=count,
            workers=entry["workers"],
        )
        hosts.append(
            {
                "host": part["host"],
                "run": part["run"],
                "complete": part["complete"],
                "reason": part["reason"],
                "metrics": part["metrics"],
                "limiter": limiter.name,
                "evidence": limiter.evidence,
                "page_cache_hit_share": _hit_share(part["metrics"]),
            }
        )
    worst = min(hosts, key=lambda h: h["metrics"].get("busy_pct_min") or 0.0)
    totals = dict(parts[0]["metrics"])
    for name in ("samples_per_s", "read_MBps", "requested_MBps"):
        values = each(name)
        totals[name] = sum(values) if len(values) == len(parts) else None
    totals["busy_pct"], totals["busy_pct_min"] = mean_busy, lowest
    return {
        "accelerators": count,
        "accelerators_total": count * len(parts),
        "busy_pct": mean_busy,
        "busy_pct_min": lowest,
        "complete": complete,
        "verdict": "pass" if passed else "fail",
        "limiter": worst["limiter"],
        "evidence": worst["evidence"] + (f" (host {worst['host']})" if len(hosts) > 1 else ""),
        "page_cache_hit_share": _hit_share(totals),
        "metrics": totals,
        "run": parts[0]["run"],
        "reason": next((p["reason"] for p in parts if p["reason"]), None),
        "hosts": hosts if len(hosts) > 1 else None,
    }


def _overrides(args: argparse.Namespace) -> list[str]:
    """The user's overrides, then what every probe is: emulated, timed, cold."""
    return [
        *args.override,
        "training.compute=emulated",
        "training.steps=null",
        f"training.duration_s={args.probe_s}",
        "pipeline.page_cache=cold",
    ]


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
    hosts = len(entry["hosts"])
    who = "this client feed" if hosts == 1 else f"these {hosts} clients feed"
    each = "" if hosts == 1 else f" each ({count * hosts} in all)"
    return (
        f"{entry['scenario']}: this storage and {who} {bound}{count} emulated "
        f"{device} accelerator(s){each} (profile {entry['profile']['profile']}); limited by "
        f"{entry.get('limiter', 'n/a')}: {entry.get('limiter_evidence', '')} "
        f"[search took {entry['seconds']} s]"
    )


def _write(document: dict[str, Any], out: Path) -> None:
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(out)
