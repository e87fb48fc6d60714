#!/usr/bin/env python3
"""Where a suite's seconds go: run the README's test command (``readme``) or
``nslab run`` over every scenario (``run``), then print the wall time and, from
the JUnit file, the summed test time per file and the slowest tests.

    sudo .venv/bin/python benchmarks/suite_time.py readme|run [--top 15]

Goals (issue 16): README command <= 45 s, ``nslab run -n 2`` <= 30 s on 2 cores.
"""
from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def command(what: str, results: Path) -> list[str]:
    python = sys.executable
    if what == "readme":
        return [python, "-m", "pytest", "-n", "auto", "labtests", "-q", "-p", "no:cacheprovider",
                f"--junitxml={results / 'junit.xml'}"]
    return [python, "-m", "topologies.cli", "run", "-n", "2", "--results", str(results)]


def per_test(junit: Path) -> list[tuple[str, float]]:
    tests = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        tests.append((f"{path}::{case.get('name')}", float(case.get("time") or 0)))
    return tests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("readme", "run"))
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nslab-suite-time-") as tmp:
        results = Path(tmp) / "results"
        started = time.monotonic()
        proc = subprocess.run(command(args.what, results), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        wall = time.monotonic() - started
        junit = results / "junit.xml"
        if not junit.is_file():
            print(proc.stdout[-3000:])
            print(f"suite_time: no JUnit file (exit {proc.returncode})", file=sys.stderr)
            return 1
        tests = per_test(junit)
    by_file: dict[str, float] = collections.defaultdict(float)
    for test_id, seconds in tests:
        by_file[test_id.split("::", 1)[0]] += seconds
    summed = sum(seconds for _, seconds in tests)
    print(f"{args.what}: exit {proc.returncode}, wall {wall:.1f} s, {len(tests)} tests, "
          f"summed test time {summed:.1f} s")
    print("per file (summed):")
    for path, seconds in sorted(by_file.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {seconds:7.1f} s  {path}")
    print("slowest tests:")
    for test_id, seconds in sorted(tests, key=lambda kv: -kv[1])[:args.top]:
        print(f"  {seconds:7.1f} s  {test_id}")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
