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
from ..lab import netns, pidfd
from ..lab.names import LAB_NAME_RULE, check_name
from ..lab.owner import OwnerRecord, all_records
from .checks import check_output_file

UP_TIMEOUT = 60
KEEPER_BOUND = 30   # s for a keeper to remove its lab on nslab down (it takes ms)


def _live_names() -> set[str]:
    return {r.name for r in all_records() if r.owner_alive()}


def find(name: str) -> OwnerRecord:
    """The one lab ``name`` names: its prefix (always one lab), or a name no other
    lab carries (two test sessions may keep labs under the same name)."""
    check_name(name)
    records = all_records()
    for record in records:
        if record.prefix == name:
            return record
    named = [r for r in records if r.name == name]
    if len(named) > 1:
        raise LabError(f"{len(named)} labs are named {name!r}: "
                       f"{', '.join(r.prefix for r in named)}; name one by its prefix")
    if named:
        return named[0]
    known = sorted(r.name or r.prefix for r in records if r.topology)
    raise LabError(f"no lab {name!r}; labs: {', '.join(known) or '(none)'}")


def cmd_up(args) -> int:
    module = scenarios.load(args.topology)
    config = scenarios.config_for(module, scenarios.parse_settings(args.set))  # fail before forking
    # No --name: a default; --name '' is a bad name like any other.
    name = check_name(args.name) if args.name is not None else f"{args.topology}-{os.getpid()}"
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
    try:
        records = [find(args.lab)] if args.lab else [r for r in all_records() if r.topology]
    except PermissionError as exc:   # the records are root's: a non-root ls may not read them
        print(f"nslab ls: needs root to read the lab records ({exc.filename})", file=sys.stderr)
        return 2
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
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
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
    if record.owner_alive() and not record.keeper:
        # A test's lab: its owner is a pytest worker, which a SIGTERM would stop.
        raise LabError(f"lab {args.lab} ({record.prefix}) belongs to running pid {record.pid}, "
                       f"not a keeper: it goes when that process ends")
    with pidfd.opened([record.pid]) as keeper:
        # Checked with the pidfd open: the pid names the keeper, not a reuse of it.
        if keeper and record.owner_alive():
            pidfd.send(keeper, signal.SIGTERM)   # it removes its lab, then exits
            if not pidfd.wait_exit(keeper, KEEPER_BOUND):
                raise LabError(f"lab {args.lab}: keeper pid {record.pid} did not finish "
                               f"in {KEEPER_BOUND} s")
    if os.path.exists(record.path):   # no keeper, or it died before removing its lab
        remove_lab(record)
    print(f"lab {record.name or record.prefix} is down")
    return 0


def cmd_capture(args) -> int:
    from ..capture.af_packet import Capture, kernel_chatter
    from ..capture.drop_reasons import HEADER, DropMonitor, describe
    from ..lab.lab import Lab
    record = find(args.lab)
    name = _node_netns(record, args.node)
    if args.pcapng:
        check_output_file("--pcapng", args.pcapng)      # before anything starts
    why_not = DropMonitor.unavailable()
    monitor = None if why_not else DropMonitor()
    before = monitor.snapshot() if monitor else None
    # What the kernel sends by itself (MLD, router solicitations, IGMP) says
    # nothing about the lab's traffic: hidden unless --all.
    hide = None if args.all else kernel_chatter
    # A helper lab owns only this capture's thread; the node is the running lab's.
    # Unnamed (its prefix): a name derived from the lab's could break the name rule.
    with Lab(description={"capture": record.prefix}) as helper:
        node = helper.attach_node(args.node, name)
        cap = Capture(node, args.device).start()
        print(f"capturing on {args.node}:{args.device}"
              + ("" if args.all else " (kernel chatter hidden: --all shows it)"), flush=True)
        shown, read, hidden, start = 0, 0, 0, time.monotonic()
        try:
            while ((args.count is None or shown < args.count) and
                   (args.seconds is None or time.monotonic() - start < args.seconds)):
                time.sleep(0.1)
                for pkt in cap.result.packets[read:]:
                    if args.count is not None and shown >= args.count:
                        break
                    read += 1
                    if hide and hide(pkt.frame):
                        hidden += 1
                        continue
                    # A line per wire frame (a GSO super-packet is several): --count is exact.
                    left = None if args.count is None else args.count - shown
                    for verdict in pkt.verdicts()[:left]:
                        print(f"{'out' if pkt.outgoing else 'in '} {len(verdict.frame):5d}B "
                              f"{verdict.summary()}", flush=True)
                        shown += 1
        except KeyboardInterrupt:
            pass
        result = cap.stop()
        if args.pcapng:
            result.write_pcapng(args.pcapng)
    print(f"-- {shown} frames; kernel dropped {result.kernel_drops}"
          + (f"; all {len(result.packets)} captured written to {args.pcapng}"
             if args.pcapng else "")
          + (f"; {hidden} frames of kernel chatter hidden (--all shows them)" if hidden else ""))
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
    p.add_argument("--name", help=f"the lab's name, {LAB_NAME_RULE} (default: topology-pid)")
    p.set_defaults(func=cmd_up, needs_root=True)

    p = sub.add_parser("ls", help="running labs: nodes, links, addresses, programs")
    p.add_argument("lab", nargs="?")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("exec", help="run a command inside a node of a lab")
    p.add_argument("lab")
    p.add_argument("node")
    # dest "argv": "command" is the subcommand's name (nslab's messages use it)
    p.add_argument("argv", metavar="command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec, needs_root=True)

    p = sub.add_parser("down", help="remove a lab made with nslab up")
    p.add_argument("lab")
    p.set_defaults(func=cmd_down, needs_root=True)

    p = sub.add_parser("capture", help="live checksum verdicts of what crosses a device")
    p.add_argument("lab")
    p.add_argument("node")
    p.add_argument("device")
    p.add_argument("--count", type=int, help="stop after N frames")
    p.add_argument("--seconds", type=float, help="stop after S seconds")
    p.add_argument("--pcapng", metavar="FILE",
                   help="also write every captured frame to FILE (Wireshark opens it)")
    p.add_argument("--all", action="store_true",
                   help="also show what the kernel sends by itself (MLD, router solicitations, "
                        "IGMP)")
    p.set_defaults(func=cmd_capture, needs_root=True)
