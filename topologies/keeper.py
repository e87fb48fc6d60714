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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nslab-keeper")
    parser.add_argument("topology")
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", dest="settings", action="append", default=[])
    args = parser.parse_args(argv)
    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # survives the terminal that ran `up`

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
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while not stop["now"]:
        time.sleep(0.2)
    lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
