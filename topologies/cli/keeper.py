"""The keeper behind ``nslab up``: builds a named topology, then owns it.

Started in its own session by ``nslab up``, it builds the topology, writes the
description into its owner record, reports "ready" (or the one-line error) on
stdout and then waits like any keeper (:mod:`topologies.lab.keeper`).
"""
from __future__ import annotations

import argparse
import signal
import sys

from .. import scenarios
from ..errors import LabError
from ..lab import Lab
from ..lab.keeper import detach_stdio, report, wait_for_signal
from ..report.describe import describe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nslab-keeper")
    parser.add_argument("topology")
    parser.add_argument("--name")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    lab = None
    try:
        module = scenarios.load(args.topology)
        config = scenarios.config_for(module, scenarios.parse_settings(args.settings))
        lab = Lab(name=args.name, topology=args.topology)
        module.build(lab, config)
        lab.record.description = {"knobs": config.knobs(), **describe(lab)}
        lab.record.keeper = True
        lab.record.save()
    except (LabError, OSError, ValueError) as exc:
        if lab is not None:
            lab.close()
        report(error=str(exc))
        return 2
    report(ready=lab.prefix)
    detach_stdio()
    wait_for_signal()
    lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
