"""The owner of a lab that outlives the command that made it (``nslab up``).

Started in its own session by ``nslab up``, it builds the topology, writes the
description into its owner record, reports "ready" (or the one-line error) on
stdout and then waits; SIGTERM (``nslab down``) or SIGINT unwinds the lab.
Its pid and start time are the owner record's, so ``nslab sweep`` removes the
lab if the keeper is ever killed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from . import catalog
from .describe import describe
from .errors import LabError
from .lab import Lab


def _wait_for_signal() -> None:
    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # survives the terminal that ran it
    while not stop["now"]:
        time.sleep(0.2)


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def adopt(prefix: str) -> int:
    """Take over a lab whose owner is about to exit (a failed test kept for
    inspection): become its owner, then remove it on ``nslab down``."""
    from .owner import all_records, process_start_time
    from .sweep import remove_lab
    record = next((r for r in all_records() if r.prefix == prefix), None)
    if record is None:
        print(json.dumps({"error": f"no lab {prefix}"}), flush=True)
        return 2
    record.pid, record.start_time = os.getpid(), process_start_time(os.getpid())
    record.save()
    print(json.dumps({"ready": prefix}), flush=True)
    _detach_stdio()
    _wait_for_signal()
    remove_lab(record)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nslab-keeper")
    parser.add_argument("topology", nargs="?")
    parser.add_argument("--name")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--adopt", metavar="PREFIX")
    args = parser.parse_args(argv)
    if args.adopt:
        return adopt(args.adopt)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    lab = None
    try:
        module = catalog.load(args.topology)
        config = catalog.config_for(module, catalog.parse_settings(args.settings))
        lab = Lab(name=args.name, topology=args.topology)
        module.build(lab, config)
        lab.record.description = {"knobs": config.knobs(), **describe(lab)}
        lab.record.save()
    except (LabError, OSError, ValueError) as exc:
        if lab is not None:
            lab.close()
        print(json.dumps({"error": str(exc)}), flush=True)
        return 2
    print(json.dumps({"ready": lab.prefix}), flush=True)
    _detach_stdio()
    _wait_for_signal()
    lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
