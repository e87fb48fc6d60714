"""``nslab up / ls / exec / down / capture``: labs a person keeps and pokes at."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from .. import scenarios
from ..errors import LabError
from ..lab import netns
from ..lab.owner import OwnerRecord, all_records

UP_TIMEOUT = 60


def _live_names() -> set[str]:
    return {r.name for r in all_records() if r.owner_alive()}


def find(name: str) -> OwnerRecord:
    """A lab by its name or prefix."""
    for record in all_records():
        if name in (record.name, record.prefix):
            return record
    known = sorted(r.name or r.prefix for r in all_records() if r.topology)
    raise LabError(f"no lab {name!r}; labs: {', '.join(known) or '(none)'}")


def cmd_up(args) -> int:
    module = scenarios.load(args.topology)
    config = scenarios.config_for(module, scenarios.parse_settings(args.set))  # fail before forking
    name = args.name or f"{args.topology}-{os.getpid()}"
    if name in _live_names():
        raise LabError(f"a lab named {name!r} is running (nslab down {name})")
    argv = [sys.executable, "-m", "topologies.cli.keeper", args.topology, "--name", name]
    for item in args.set:
        argv += ["--set", item]
    keeper = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              start_new_session=True, text=True)
    line = keeper.stdout.readline()
    status = json.loads(line) if line.strip() else {"error": f"keeper exited {keeper.wait()}"}
    if "error" in status:
        keeper.wait(timeout=UP_TIMEOUT)
        raise LabError(status["error"])
    print(f"lab {name} is up ({status['ready']}); knobs: "
          + ", ".join(f"{k}={v}" for k, v in config.knobs().items()))
    print(f"  nslab ls {name} | nslab exec {name} <node> -- <command> | nslab down {name}")
    return 0


def cmd_ls(args) -> int:
    from ..report.describe import render
    records = [r for r in all_records() if r.topology and (not args.lab or
                                                           args.lab in (r.name, r.prefix))]
    if args.lab and not records:
        find(args.lab)   # the one-line error
    for record in records:
        state = "" if record.owner_alive() else "  [owner dead: nslab sweep removes it]"
        print(render(record) + state)
    if not records:
        print("no labs running (nslab up <topology>)")
    return 0


def _node_netns(record: OwnerRecord, node: str) -> str:
    nodes = record.description.get("nodes", {})
    if node not in nodes:
        raise LabError(f"lab {record.name}: no node {node!r}; nodes: {', '.join(nodes)}")
    return nodes[node]["netns"]


def cmd_exec(args) -> int:
    record = find(args.lab)
    name = _node_netns(record, args.node)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("nothing to run: nslab exec <lab> <node> -- <command>")
    netns.enter(name)   # this process, single-threaded here, then exec
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        raise LabError(f"{command[0]}: command not found") from None


def cmd_down(args) -> int:
    from ..lab.sweep import remove_lab
    record = find(args.lab)
    if record.owner_alive():
        os.kill(record.pid, signal.SIGTERM)   # the keeper this lab's record names
        deadline = time.monotonic() + 30
        while os.path.exists(record.path) and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(record.path):
            raise LabError(f"lab {args.lab}: keeper pid {record.pid} did not finish in 30 s")
    else:
        remove_lab(record)
    print(f"lab {record.name or record.prefix} is down")
    return 0


def cmd_capture(args) -> int:
    from ..capture.af_packet import Capture
    from ..capture.drop_reasons import HEADER, DropMonitor, describe
    from ..lab.lab import Lab
    record = find(args.lab)
    name = _node_netns(record, args.node)
    why_not = DropMonitor.unavailable()
    monitor = None if why_not else DropMonitor()
    before = monitor.snapshot() if monitor else None
    # A helper lab owns only this capture's thread; the node is the running lab's.
    with Lab(name=f"capture-{record.name}") as helper:
        node = helper.attach_node(args.node, name)
        cap = Capture(node, args.device).start()
        shown, start = 0, time.monotonic()
        try:
            while ((args.count is None or shown < args.count) and
                   (args.seconds is None or time.monotonic() - start < args.seconds)):
                time.sleep(0.1)
                for pkt in cap.result.packets[shown:]:
                    shown += 1
                    for verdict in pkt.verdicts():
                        print(f"{'out' if pkt.outgoing else 'in '} {len(verdict.frame):5d}B "
                              f"{verdict.summary()}", flush=True)
        except KeyboardInterrupt:
            pass
        result = cap.stop()
    print(f"-- {shown} frames; kernel dropped {result.kernel_drops}")
    print(HEADER + ":" if monitor else why_not)
    if monitor:
        for line in describe(monitor.since(before)) or ["(none)"]:
            print(f"   {line}")
        monitor.close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("up", help="build a named topology and leave it running")
    p.add_argument("topology", help=", ".join(sorted(scenarios.TOPOLOGIES)))
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    p.add_argument("--name", help="the lab's name (default: topology-pid)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("ls", help="running labs: nodes, links, addresses, programs")
    p.add_argument("lab", nargs="?")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("exec", help="run a command inside a node of a lab")
    p.add_argument("lab")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("down", help="remove a lab made with nslab up")
    p.add_argument("lab")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("capture", help="live checksum verdicts of what crosses a device")
    p.add_argument("lab")
    p.add_argument("node")
    p.add_argument("device")
    p.add_argument("--count", type=int, help="stop after N frames")
    p.add_argument("--seconds", type=float, help="stop after S seconds")
    p.set_defaults(func=cmd_capture)
