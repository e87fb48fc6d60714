#!/usr/bin/env python3
"""Run the suite N times while a CPU-bound load runs on every core, and print
the failures per test id.

    sudo .venv/bin/python benchmarks/flakiness.py [--runs 10] [--load 2] [-- PYTEST ARGS]

The default pytest arguments are the README's test command (``-n auto labtests``).
The load is ``--load`` busy-looping processes started here (default: one per
core); each stops by itself after ``--max-seconds`` and all are killed by pid
when the runs end.
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from topologies.lab import raise_on_termination
from topologies.paths import PROJECT_ROOT

# Busy until the deadline, or until the script that started it is gone.
BUSY_LOOP = ("import os, sys, time\nend, parent = time.monotonic() + float(sys.argv[1]), "
             "os.getppid()\nwhile time.monotonic() < end and os.getppid() == parent:\n    pass\n")


def failures(junit: Path) -> tuple[int, list[str]]:
    """Tests run, and the ids of those that failed or errored."""
    if not junit.exists():
        return 0, []
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in cases
           if c.find("failure") is not None or c.find("error") is not None]
    return len(cases), bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1,
                        help="busy-looping processes (default: one per core)")
    parser.add_argument("--max-seconds", type=float, default=3 * 3600,
                        help="the load stops by itself after this long")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    raise_on_termination()      # SIGTERM unwinds too: the load is stopped on the way out
    pytest_args = [a for a in args.pytest_args if a != "--"] or ["-n", "auto", "labtests"]
    load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(args.max_seconds)])
            for _ in range(args.load)]
    per_test: collections.Counter = collections.Counter()
    lines = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(1, args.runs + 1):
                junit = Path(tmp) / f"run-{n}.xml"
                started = time.monotonic()
                code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p",
                                        "no:cacheprovider", f"--junitxml={junit}", *pytest_args],
                                       cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                seconds = time.monotonic() - started
                ran, bad = failures(junit)
                per_test.update(bad)
                load_avg = os.getloadavg()[0]
                lines.append(f"run {n}: exit {code}, {ran} tests, {len(bad)} failed, "
                             f"{seconds:.0f} s, load {load_avg:.1f}")
                print(lines[-1], flush=True)
    finally:
        for proc in load:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    print(f"\nflakiness: {args.runs} runs of pytest {' '.join(pytest_args)} "
          f"under {args.load} busy-looping processes")
    for test, count in per_test.most_common():
        print(f"  {count}/{args.runs}  {test}")
    print(f"flakiness: {sum(per_test.values())} failures in {args.runs} runs "
          f"({len(per_test)} distinct tests)")
    return 1 if per_test else 0


if __name__ == "__main__":
    sys.exit(main())
