"""``nslab run``: every scenario on the running kernel, and what decided each verdict.

pytest runs underneath (in parallel); the results directory keeps the JUnit
file, ``report.md`` (self-contained: scenario tables, failures with their
evidence, known bugs, drop-monitor status), the scenario tables as text, and
pcapng files of every capture.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from ..capture.drop_reasons import DropMonitor
from ..errors import LabError
from ..paths import PROJECT_ROOT, SUITE
from ..report import rows as report_rows
from ..scenarios import known_bugs

REPO = str(PROJECT_ROOT)
TESTS = str(SUITE)


def scenarios() -> list[str]:
    from ..scenarios import TOPOLOGIES
    return sorted(TOPOLOGIES)


def pytest_argv(args, results: str) -> list[str]:
    unknown = [s for s in args.scenario or () if s not in scenarios()]
    if unknown:
        raise LabError(f"unknown scenario {unknown[0]!r}; scenarios: {', '.join(scenarios())}")
    # Only the scenario suites: the tool's own self-tests (labtests/selftests) are not run here.
    targets = [os.path.join(TESTS, f"test_{s}.py") for s in args.scenario or scenarios()]
    argv = [sys.executable, "-m", "pytest", *targets, "-n", str(args.jobs),
            f"--junitxml={os.path.join(results, 'junit.xml')}", "-p", "no:cacheprovider", "-rfEX"]
    if args.k:
        argv += ["-k", args.k]
    return argv


def junit_summary(path: str) -> tuple[dict, list[tuple[str, str]]]:
    """Counts and the failures (test id, first line of the message)."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures = []
    if not os.path.exists(path):
        return counts, failures
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                name = f"{case.get('classname')}::{case.get('name')}"
                failures.append((name, (bad.get("message") or "").splitlines()[0][:300]))
    return counts, failures


def markdown(results: str, rows: list, counts: dict, failures: list, seconds: float) -> str:
    out = [f"# nslab run — {platform.node()}, kernel {os.uname().release}",
           "", f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {seconds:.0f} s; "
           f"{counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
           f"{counts['skipped']} skipped or expected failures.", "",
           f"Drop-reason monitor: {DropMonitor.unavailable() or 'on (machine-wide)'}", ""]
    if failures:
        out += ["## Failures", ""]
        out += [f"- `{name}`: {message}  \n  artifacts: `results/artifacts/`" for name, message
                in failures]
        out.append("")
    for scenario in sorted({r.scenario for r in rows}):
        out += [f"## {scenario}", "", "```", report_rows.render([r for r in rows
                                                              if r.scenario == scenario]), "```", ""]
    out += ["## Known bugs", "", known_bugs.markdown_table(), ""]
    return "\n".join(out)


def main(args) -> int:
    results = os.path.abspath(args.results or os.path.join(
        REPO, "results", time.strftime("run-%Y%m%d-%H%M%S")))
    os.makedirs(results, exist_ok=True)
    argv = pytest_argv(args, results)
    env = dict(os.environ, NSLAB_RESULTS=results, NSLAB_KEEP_PCAPNG="1")
    if args.keep_failed:
        env["NSLAB_KEEP_FAILED"] = "1"
    selected = args.scenario or scenarios()
    print(f"nslab run: {len(selected)} scenario{'s' if len(selected) > 1 else ''} "
          f"({', '.join(selected)}) on kernel {os.uname().release}; "
          f"results in {results}", flush=True)
    start = time.monotonic()
    code = subprocess.call(argv, cwd=REPO, env=env)
    seconds = time.monotonic() - start
    rows = report_rows.load(results)
    counts, failures = junit_summary(os.path.join(results, "junit.xml"))
    if rows:
        tables = report_rows.render(rows)
        with open(os.path.join(results, "scenarios.txt"), "w") as f:
            f.write(tables + "\n")
        print("\n" + tables)
    with open(os.path.join(results, "report.md"), "w") as f:
        f.write(markdown(results, rows, counts, failures, seconds))
    print(f"\nnslab run: {counts['tests']} tests, {counts['failures'] + counts['errors']} "
          f"failed, in {seconds:.0f} s; report: {os.path.join(results, 'report.md')}")
    return code


def register(sub) -> None:
    p = sub.add_parser("run", help="run every scenario on the current kernel")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="only this scenario (repeatable): " + ", ".join(scenarios()))
    p.add_argument("-k", metavar="EXPR", help="pytest -k selection of variants")
    p.add_argument("-n", "--jobs", default="auto", help="parallel workers (default: auto)")
    p.add_argument("--results", metavar="DIR", help="results directory")
    p.add_argument("--keep-failed", action="store_true",
                   help="leave a failed test's lab up for inspection (nslab ls/exec/down)")
    p.set_defaults(func=main)
