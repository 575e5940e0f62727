"""``harness lab up|down|status|rate|exec``: the network storage lab on this machine (root)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.commands import json_output_arg
from harness.errors import ExitCode, HarnessError

HELP = "a storage host and client hosts in network namespaces, sshfs over rate-limited links"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="make the namespaces, links, sshd, node_exporter, mounts")
    up.add_argument("--clients", type=int, default=1, metavar="N", help="client hosts, 1 to 4")
    up.add_argument(
        "--rate",
        default="100mbit",
        help="each link's rate (tbf on the storage end: what a client reads), e.g. 100mbit",
    )
    up.add_argument(
        "--delay-ms",
        type=float,
        default=None,
        metavar="X",
        help="added delay from storage to client (tc netem, where the kernel has it)",
    )
    up.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="the folder the storage host exports (default /srv/harness-lab/export, created)",
    )
    actions.add_parser("down", help="stop and remove everything up made (the export stays)")
    status = actions.add_parser("status", help="what is up, or 'down'")
    json_output_arg(status, "the lab's state and what is live")
    rate = actions.add_parser("rate", help="change the links' rate, e.g. harness lab rate 10mbit")
    rate.add_argument("rate", help="the new rate, e.g. 10mbit")
    rate.add_argument("--client", type=int, default=None, metavar="N", help="only client N")
    run_in = actions.add_parser(
        "exec", help="run a command in a host's network namespace: exec client1 -- CMD..."
    )
    run_in.add_argument("host", help="client1..client4 or storage")
    run_in.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...")


def run(args: argparse.Namespace) -> int:
    from harness import lab

    try:
        if args.action == "up":
            return _up(args)
        if args.action == "down":
            return _down()
        if args.action == "status":
            return _status(args)
        if args.action == "rate":
            state = lab.set_rate(lab.parse_rate(args.rate), args.client)
            for link in state.links:
                print(f"client{link.client}: {link.storage_interface} at {link.rate}")
            return ExitCode.OK
        return _exec(args)
    except lab.LabUnavailable as exc:
        print(f"lab not available: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT


def _up(args: argparse.Namespace) -> int:
    from harness import lab
    from harness.lab import plan

    export = (args.export or plan.DEFAULT_EXPORT).absolute()
    state = lab.up(
        lab.UpRequest(
            clients=args.clients,
            rate=lab.parse_rate(args.rate),
            delay_ms=args.delay_ms,
            export=export,
        )
    )
    print(f"lab up in {state.setup_s:.1f} s")
    for line in _describe(lab.status()):
        print(line)
    return ExitCode.OK


def _down() -> int:
    from harness import lab

    problems = lab.down()
    for problem in problems:
        print(f"lab down: {problem}", file=sys.stderr)
    if problems:
        return ExitCode.FAILED
    print("lab down")
    return ExitCode.OK


def _status(args: argparse.Namespace) -> int:
    from harness import lab
    from harness.files import write_json_output

    document = lab.status()
    if args.json is not None:
        write_json_output(args.json, document)
        return ExitCode.OK
    for line in _describe(document):
        print(line)
    return ExitCode.OK


def _exec(args: argparse.Namespace) -> int:
    from harness import lab
    from harness.lab import plan

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise HarnessError("lab exec: no command given (harness lab exec client1 -- CMD...)")
    state = lab.require_state()
    hosts = {"storage": plan.STORAGE_NAMESPACE}
    hosts |= {f"client{n}": plan.client_namespace(n) for n in range(1, state.clients + 1)}
    if args.host not in hosts:
        raise HarnessError(f"lab exec {args.host}: the lab's hosts are {', '.join(hosts)}")
    sys.stdout.flush()
    # ip netns exec runs the command in place of this process: its exit status is ours.
    os.execvp("ip", ["ip", "netns", "exec", hosts[args.host], *command])


def _describe(document: dict) -> list[str]:
    """``harness lab status`` as text."""
    if not document["up"]:
        leftovers = document["leftover_namespaces"]
        return [
            "down"
            + (f" (left over: {', '.join(leftovers)}; harness lab down)" if leftovers else "")
        ]
    state = document["state"]
    lines = [
        f"up since {state['started_at']} ({state['phase']}"
        + (f", set up in {state['setup_s']:.1f} s)" if state["setup_s"] is not None else ")"),
        f"export: {state['export']} (disk: {state['export_device'] or 'none found'})",
        f"exporter: {state['exporter_url'] or 'not started'}",
        f"namespaces: {', '.join(document['namespaces_present']) or 'none'}",
    ]
    for link in state["links"]:
        delay = f", +{link['delay_ms']:g} ms" if link["delay_ms"] is not None else ""
        lines.append(
            f"link client{link['client']}: {link['storage_interface']} {link['storage_address']}"
            f" <-> {link['client_interface']} {link['client_address']} ({link['namespace']}),"
            f" {link['rate']}{delay}; tc: {document['qdiscs'].get(link['storage_interface'])}"
        )
    for mount in state["mounts"]:
        lines.append(
            f"mount client{mount['client']}: {mount['source']} on {mount['mount_point']}"
            f" ({'mounted' if mount['mounted'] else 'NOT mounted'})"
        )
    for process in state["processes"]:
        where = f" in {process['namespace']}" if process["namespace"] else ""
        lines.append(
            f"process {process['role']}: pid {process['pid']}{where}"
            f" ({'alive' if process['alive'] else 'GONE'}), log {process['log']}"
        )
    return lines
