"""``nslab run``: every scenario on the running kernel, and what decided each verdict.

pytest runs underneath (in parallel); the results directory keeps the JUnit
file, ``report.md`` (self-contained: scenario tables, failures with their
evidence, known bugs, drop-monitor status), the scenario tables as text, and
pcapng files of every capture.

A selected scenario of which no test ran (all skipped: no root, a kernel feature
missing) fails the run unless ``--allow-skips``. Ctrl-C or SIGTERM go on to pytest;
the report of the tests that finished is still written, marked interrupted, and
the exit status is 130 / 143.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ..capture.drop_reasons import DropMonitor
from ..errors import LabError
from ..kernels.matrix import outcome_of, read_junit, test_id
from ..paths import IN_CHECKOUT, PROJECT_ROOT, SUITE
from ..report import html as report_html
from ..report import ktap
from ..report import rows as report_rows
from ..report.artifacts import safe_name
from ..report.progress import Progress
from ..scenarios import known_bugs
from ..selection import unused_plugins
from .checks import check_expression, check_jobs, check_output_file, check_results_dir

REPO = str(PROJECT_ROOT)
TESTS = str(SUITE)
NOTHING_COLLECTED = 5    # pytest's exit status when no test was selected
TEST_TIMEOUT = 300       # s per test, as in pyproject.toml
TEST_EXTRAS = (("pytest", "pytest"), ("xdist", "pytest-xdist"),
               ("pytest_timeout", "pytest-timeout"), ("scapy", "scapy"), ("hypothesis", "hypothesis"))


def scenarios() -> list[str]:
    from ..scenarios import TOPOLOGIES
    return sorted(TOPOLOGIES)


def check_test_extras() -> None:
    """The scenario suites need nslab's test extras; say so in one line, not with
    pytest's import errors."""
    missing = [name for module, name in TEST_EXTRAS if importlib.util.find_spec(module) is None]
    if missing:
        raise LabError(f"the scenario suites need nslab's test extras: pip install "
                       f"'nslab[test]' (missing: {', '.join(missing)})")


def pytest_argv(args, results: str) -> list[str]:
    """pytest's command line; every bad input is answered here, before anything exists."""
    unknown = [s for s in args.scenario or () if s not in scenarios()]
    if unknown:
        raise LabError(f"unknown scenario {unknown[0]!r}; scenarios: {', '.join(scenarios())}")
    if args.k is not None:
        check_expression("-k", args.k)
    if args.ktap:
        check_output_file("--ktap", args.ktap)
    check_jobs(args.jobs)
    # Only the scenario suites: the tool's own self-tests (labtests/selftests) are not run here.
    targets = [os.path.join(TESTS, f"test_{s}.py") for s in args.scenario or scenarios()]
    check_test_extras()
    # The options the checkout's pyproject sets, given here too: an installed nslab
    # runs its bundled suites with no ini file of ours.
    argv = [sys.executable, "-m", "pytest", *targets, "-n", str(args.jobs),
            f"--junitxml={os.path.join(results, 'junit.xml')}", "-p", "no:cacheprovider", "-rfEX",
            "-v",    # a line per result: what the progress line counts (all in console.log)
            "--dist", "loadgroup", "--timeout", str(TEST_TIMEOUT), *unused_plugins(targets)]
    if args.k:
        argv += ["-k", args.k]
    return argv


def _junit_root(path: str):
    """The parsed JUnit file, or None (missing, or cut short by a killed pytest)."""
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None


def junit_summary(path: str) -> tuple[dict, list[tuple[str, str]]]:
    """Counts and the failures (test id, first line of the message)."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures = []
    root = _junit_root(path)
    if root is None:
        return counts, failures
    for suite in root.iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                name = test_id(case.get("classname", ""), case.get("name", ""))
                failures.append((name, (bad.get("message") or "").splitlines()[0][:300]))
    return counts, failures


def scenario_of(case: ET.Element, selected: list[str]) -> str:
    """The scenario a JUnit testcase belongs to (its module ``test_<scenario>``), or ""."""
    for text in (case.get("classname") or "", case.get("name") or ""):
        for part in re.split(r"[./]", text):
            if part.startswith("test_") and part[len("test_"):] in selected:
                return part[len("test_"):]
    return ""


def scenarios_not_run(path: str, selected: list[str], must_collect: bool) -> list[str]:
    """One line per selected scenario of which no test passed, failed or xfailed:
    every test skipped (no root, a kernel feature missing) or, when ``must_collect``
    (the scenario was asked for by name, or nothing narrowed the selection), none ran."""
    ran: dict[str, int] = {s: 0 for s in selected}
    skipped: dict[str, dict[str, int]] = {s: {} for s in selected}
    root = _junit_root(path)
    for case in root.iter("testcase") if root is not None else ():
        scenario = scenario_of(case, selected)
        if not scenario:
            continue
        outcome = outcome_of(case)
        if outcome.status == "skipped":
            reason = (outcome.reason.splitlines() or ["no reason given"])[0][:160]
            skipped[scenario][reason] = skipped[scenario].get(reason, 0) + 1
        else:
            ran[scenario] += 1
    lines = []
    for scenario in selected:
        if ran[scenario]:
            continue
        reasons = skipped[scenario]
        if reasons:
            why = "; ".join(f"{n} × {reason}" for reason, n in
                            sorted(reasons.items(), key=lambda item: -item[1])[:3])
            lines.append(f"scenario {scenario} did not run: every test skipped ({why})")
        elif must_collect:
            lines.append(f"scenario {scenario} did not run: no test of it was collected")
    return lines


def artifacts_of(results: str, nodeid: str) -> str:
    """Where a failed test's artifacts are in ``results`` (conftest names them by the
    test id), or "" when it left none (no lab)."""
    where = os.path.join(results, "artifacts", safe_name(nodeid))
    return where if os.path.isdir(where) else ""


def markdown(results: str, rows: list, counts: dict, failures: list, seconds: float,
             interrupted: str = "", not_run: tuple = ()) -> str:
    title = f"# nslab run — {platform.node()}, kernel {os.uname().release}"
    out = [title + (f" — interrupted ({interrupted})" if interrupted else ""),
           "", f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {seconds:.0f} s; "
           f"{counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
           f"{counts['skipped']} skipped or expected failures.", "",
           f"Drop-reason monitor: {DropMonitor.unavailable() or 'on (machine-wide)'}", ""]
    if interrupted:
        out += [f"**Interrupted** by {interrupted}: only the tests that finished before it "
                "are in this report.", ""]
    if not_run:
        out += ["## Scenarios that did not run", ""] + [f"- {line}" for line in not_run] + [""]
    if failures:
        out += ["## Failures", ""]
        for name, message in failures:
            where = artifacts_of(results, name)
            out.append(f"- `{name}`: {message}  \n  artifacts: "
                       + (f"`{where}/`" if where else "none (the test made no lab)"))
        out.append("")
    for scenario in sorted({r.scenario for r in rows}):
        out += [f"## {scenario}", "", "```", report_rows.render([r for r in rows
                                                              if r.scenario == scenario]), "```", ""]
    out += ["## Known bugs", "", known_bugs.markdown_table(), ""]
    return "\n".join(out)


def html_page(results: str, rows: list, counts: dict, failures: list, seconds: float,
              interrupted: str = "", not_run: tuple = ()) -> report_html.Page:
    summary = {"host": platform.node(), "kernel": os.uname().release,
               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "took": f"{seconds:.0f} s",
               "tests": f"{counts['tests']} ({counts['failures']} failed, {counts['errors']} "
                        f"errors, {counts['skipped']} skipped or expected failures)",
               "drop-reason monitor": DropMonitor.unavailable() or "on (machine-wide)"}
    if interrupted:
        summary["interrupted"] = f"by {interrupted}: only the tests that finished are here"
    for line in not_run:
        summary.setdefault("did not run", "")
        summary["did not run"] += line + "; "
    return report_html.Page(
        title=f"nslab run — kernel {os.uname().release}", summary=summary, rows=rows,
        failures=[failure_of(results, name, message) for name, message in failures])


def failure_of(results: str, name: str, message: str) -> report_html.Failure:
    where = artifacts_of(results, name)
    if not where:
        return report_html.Failure(name, message)
    return report_html.Failure(name, message, os.path.relpath(where, results),
                               sorted(p for p in os.listdir(where) if p.endswith(".pcapng")))


class Forwarder:
    """SIGINT/SIGTERM to ``nslab run`` go on to pytest's process group (workers
    included). pytest runs in a group of its own, so a Ctrl-C in the terminal
    reaches it once, through us, whoever sent it; it then ends its session (JUnit
    written, labs removed) and we still write what it saw. The first signal sets
    our exit status; until we are done, more of them only go on to pytest."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.proc = None
        self.received: list[int] = []

    def __enter__(self) -> "Forwarder":
        self.previous = {sig: signal.signal(sig, self._forward) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _forward(self, signum, _frame) -> None:
        self.received.append(signum)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        self.proc = subprocess.Popen(argv, preexec_fn=_own_group_dying_with_parent(),
                                     stdin=subprocess.DEVNULL, **kw)
        for signum in self.received:   # one that came while pytest was starting
            os.killpg(self.proc.pid, signum)
        return self.proc

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received[0]).name if self.received else ""


def _own_group_dying_with_parent():
    """pytest in a process group of its own, which gets SIGTERM if nslab dies
    (SIGKILL, or its process group killed): nothing else would stop it then."""
    libc = ctypes.CDLL(None, use_errno=True)   # loaded before the fork

    def preexec() -> None:
        os.setpgid(0, 0)
        libc.prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG
        # Forwarded interrupts must land even when we were started with SIGINT
        # ignored (a background job of a non-interactive shell, e.g. in CI).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return preexec


def main(args) -> int:
    # Under the current directory, never inside an installed nslab.
    results = os.path.abspath(args.results or os.path.join(
        "results", time.strftime("run-%Y%m%d-%H%M%S")))
    argv = pytest_argv(args, check_results_dir(results))   # bad input: nothing created
    os.makedirs(results, exist_ok=True)
    env = dict(os.environ, NSLAB_RESULTS=results, NSLAB_KEEP_PCAPNG="1")
    if args.keep_failed:
        env["NSLAB_KEEP_FAILED"] = "1"
    selected = args.scenario or scenarios()
    print(f"nslab run: {len(selected)} scenario{'s' if len(selected) > 1 else ''} "
          f"({', '.join(selected)}) on kernel {os.uname().release}; "
          f"results in {results}", flush=True)
    start = time.monotonic()
    with Forwarder() as forwarder:   # until the report is written
        proc = forwarder.start(argv, cwd=REPO if IN_CHECKOUT else None, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace")
        code = follow(proc, os.path.join(results, "console.log"))
        interrupted = forwarder.signal_name
        return finish(args, results, selected, code, interrupted, time.monotonic() - start)


SUMMARY_START = "short test summary info"


def follow(proc: subprocess.Popen, log_path: str) -> int:
    """pytest's output into ``console.log``, a live progress line on the terminal, and
    its closing summary (failures, errors, XPASS) printed when it ends."""
    progress, tail, in_summary = Progress(), [], False
    # Line-buffered: console.log is followed live (tail -f, and the tests that
    # interrupt a run once results are in it).
    with open(log_path, "w", buffering=1) as log:
        for text in proc.stdout:
            log.write(text)
            progress.feed(text)
            in_summary = in_summary or SUMMARY_START in text
            if in_summary:
                tail.append(text)
    code = proc.wait()
    progress.close()
    sys.stdout.write("".join(tail))
    return code


def finish(args, results: str, selected: list[str], code: int, interrupted: str,
           seconds: float) -> int:
    """Tables, report and closing line of what pytest saw; the exit status."""
    rows = report_rows.load(results)
    junit = os.path.join(results, "junit.xml")
    counts, failures = junit_summary(junit)
    not_run = [] if interrupted or args.allow_skips or code == NOTHING_COLLECTED else \
        scenarios_not_run(junit, selected, must_collect=bool(args.scenario) or not args.k)
    tables = report_rows.render(rows) if rows else ""
    if tables:
        with open(os.path.join(results, "scenarios.txt"), "w") as f:
            f.write(tables + "\n")
    with open(os.path.join(results, "report.md"), "w") as f:
        f.write(markdown(results, rows, counts, failures, seconds, interrupted, not_run))
    report_html.write(html_page(results, rows, counts, failures, seconds, interrupted, not_run),
                      os.path.join(results, "report.html"))
    if args.ktap:
        with open(args.ktap, "w") as f:
            f.write(ktap.render(read_junit(Path(junit), PROJECT_ROOT)))
    if tables:    # printed after the files are written: a closed stdout loses nothing
        print("\n" + tables)
    for line in not_run:
        print(f"nslab run: {line}", file=sys.stderr)
    if code == NOTHING_COLLECTED and not interrupted:
        print(f"nslab run: no test was selected (pytest exit {code})"
              + (f": -k {args.k!r} matches none of {', '.join(selected)}" if args.k else ""),
              file=sys.stderr)
    state = f"interrupted ({interrupted}) after " if interrupted else ""
    print(f"\nnslab run: {state}{counts['tests']} tests, "
          f"{counts['failures'] + counts['errors']} failed, in {seconds:.0f} s; "
          f"report: {os.path.join(results, 'report.md')}")
    if interrupted:
        return 128 + signal.Signals[interrupted]
    return 1 if not_run and code == 0 else code


def register(sub) -> None:
    p = sub.add_parser("run", help="run every scenario on the current kernel")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="only this scenario (repeatable): " + ", ".join(scenarios()))
    p.add_argument("-k", metavar="EXPR", help="pytest -k selection of variants")
    p.add_argument("-n", "--jobs", default="auto", help="parallel workers (default: auto)")
    p.add_argument("--results", metavar="DIR", help="results directory")
    p.add_argument("--keep-failed", action="store_true",
                   help="leave a failed test's lab up for inspection (nslab ls/exec/down)")
    p.add_argument("--ktap", metavar="FILE",
                   help="also write the results as KTAP (as kernel selftests do) to FILE")
    p.add_argument("--allow-skips", action="store_true",
                   help="succeed even when a selected scenario did not run (every test "
                        "skipped: no root, a kernel feature missing)")
    p.set_defaults(func=main, needs_root=True)
