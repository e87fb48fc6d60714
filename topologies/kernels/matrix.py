"""``nslab matrix``: the selected lab tests on several kernels, one table.

    nslab matrix --kernel host --kernel deb:6.1.0-56 --kernel deb:6.12.117 \\
        labtests/selftests/test_lab_core.py -k netkit

Every kernel gets a results directory with its JUnit file (and, from a VM, the
console log and the guest's exit status); the table is test × kernel →
passed / failed / error / xfail / xpass / skipped, with the reason of every
skip and xfail as a numbered note. A kernel whose run did not complete (no
boot, a panic, a hang past ``--timeout``) fails the matrix with its console
tail. BPF objects are built once on the host before any VM boots.
"""
from __future__ import annotations

import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from .. import bytecode
from ..errors import LabError
from ..paths import PROJECT_ROOT
from . import images, vm
from .images import Kernel

REPO = PROJECT_ROOT
STATUSES = ("passed", "failed", "error", "xfail", "xpass", "skipped")
MISSING = "not run"
# The tests whose outcome can depend on the kernel (conftest marks every test that
# builds a lab or needs root with ``lab``); the pure-Python verdict/unit tests
# would only repeat the host's answer, at TCG speed. VM tests never nest.
DEFAULT_SELECTION = ("labtests", "-m", "lab and not vm")


@dataclass(frozen=True)
class Outcome:
    status: str          # one of STATUSES
    reason: str = ""     # skip/xfail reason, failure message

    def cell(self) -> str:
        return self.status


@dataclass
class KernelResult:
    kernel: Kernel
    run: vm.Run
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    no_skips: bool = False          # a skipped test fails this kernel too

    @property
    def ok(self) -> bool:
        bad = ("failed", "error", "xpass") + (("skipped",) if self.no_skips else ())
        return (self.run.completed and self.run.exit_code == 0 and bool(self.outcomes)
                and not any(o.status in bad for o in self.outcomes.values()))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts


# -- JUnit ------------------------------------------------------------------------------
def test_id(classname: str, name: str, root: Path = REPO) -> str:
    """``labtests.test_bpf`` + ``test_x[a]`` → ``labtests/test_bpf.py::test_x[a]``
    (trailing class names stay ``::``-separated)."""
    parts = classname.split(".") if classname else []
    for cut in range(len(parts), 0, -1):
        module = "/".join(parts[:cut]) + ".py"
        if (root / module).is_file():
            return "::".join([module, *parts[cut:], name])
    return "::".join(["/".join(parts) + ".py", name]) if parts else name


def outcome_of(case: ET.Element) -> Outcome:
    """A JUnit ``testcase`` as pytest writes it → Outcome."""
    for child in case:
        message = (child.get("message") or "").strip()
        if child.tag == "skipped":
            if child.get("type") == "pytest.xfail":
                return Outcome("xfail", message)
            return Outcome("skipped", message)
        if child.tag == "failure":
            if message.startswith("[XPASS(strict)]"):
                return Outcome("xpass", message[len("[XPASS(strict)]"):].strip())
            return Outcome("failed", message)
        if child.tag == "error":
            return Outcome("error", message)
    return Outcome("passed")


def read_junit(path: Path, root: Path = REPO) -> dict[str, Outcome]:
    """test id → Outcome; a test with a call failure *and* a teardown error is
    reported by pytest twice: the worse one wins."""
    outcomes: dict[str, Outcome] = {}
    if not path.is_file():
        return outcomes
    rank = {s: i for i, s in enumerate(("passed", "skipped", "xfail", "xpass", "failed", "error"))}
    for case in ET.parse(path).getroot().iter("testcase"):
        tid = test_id(case.get("classname", ""), case.get("name", ""), root)
        new = outcome_of(case)
        old = outcomes.get(tid)
        if old is None or rank[new.status] > rank[old.status]:
            outcomes[tid] = new
    return outcomes


# -- the table --------------------------------------------------------------------------
def _table(headers: list[str], lines: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line).rstrip() for line in lines]
    return "\n".join(out)


def render(results: list[KernelResult], only_differences: bool = False) -> str:
    """test × kernel; skip/xfail/failure reasons as numbered notes under the table."""
    tests = sorted({t for r in results for t in r.outcomes})
    notes: dict[str, int] = {}
    lines = []
    for test in tests:
        cells = []
        for result in results:
            outcome = result.outcomes.get(test)
            if outcome is None:
                cells.append(MISSING)
                continue
            cell = outcome.cell()
            if outcome.reason and outcome.status != "passed":
                note = notes.setdefault(f"{outcome.status}: {outcome.reason}", len(notes) + 1)
                cell += f" [{note}]"
            cells.append(cell)
        if only_differences and len({c.split(" [")[0] for c in cells}) == 1:
            continue
        lines.append([test, *cells])
    headers = ["test", *(r.kernel.name for r in results)]
    parts = [_table(headers, lines) if lines else "(no test results)"]
    if notes:
        width = len(str(len(notes)))
        parts.append("\n".join(f"[{n:>{width}}] {text[:300]}" for text, n in notes.items()))
    parts.append(summary(results))
    return "\n\n".join(parts)


def summary(results: list[KernelResult]) -> str:
    lines = []
    for result in results:
        run = result.run
        counts = result.counts()
        tally = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))
        timing = f"{run.seconds:.0f} s"
        if run.boot_seconds is not None:
            timing += f", boot {run.boot_seconds:.1f} s"
        if run.first_result_seconds is not None:
            timing += f", first test result at {run.first_result_seconds:.1f} s"
        state = "ok" if result.ok else (run.problem() or f"not ok (pytest exit {run.exit_code})")
        release = f" ({run.release})" if run.release and run.release != result.kernel.name else ""
        lines.append(f"{result.kernel.name}{release}: {state}; {tally or 'no results'}; {timing}")
        if not run.completed and run.console_tail:
            lines += ["    console tail:"] + [f"    | {t}" for t in run.console_tail[-20:]]
    return "\n".join(lines)


# -- running ----------------------------------------------------------------------------
def run_on_host(pytest_argv: list[str], results: Path, *, timeout: float,
                progress: vm.Progress) -> vm.Run:
    results = results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    (results / "junit.xml").unlink(missing_ok=True)
    run = vm.Run(kernel=images.HOST, results=results, release=os.uname().release)
    argv = [sys.executable, "-m", "pytest", *pytest_argv,
            f"--junitxml={results / 'junit.xml'}", "-p", "no:cacheprovider", "-v",
            "--color=no"]
    progress(f"[host] running on {run.release}, timeout {timeout:.0f} s")
    env = dict(os.environ, NSLAB_RESULTS=str(results))
    vm.watch(argv, run, timeout=timeout, progress=progress, env=env, cwd=REPO)
    if run.state != "timeout":
        run.state, run.detail = "completed", f"pytest exit {run.exit_code}"
    progress(f"[host] {vm.summary_line(run)}")
    return run


def run_kernel(kernel: Kernel, pytest_argv: list[str], results: Path, *, timeout: float,
               progress: vm.Progress, cpus: int = 2, memory: str = "2G") -> KernelResult:
    """One kernel: prepared (fetched), run, JUnit read back."""
    directory = results / kernel.slug
    if kernel.is_host:
        run = run_on_host(pytest_argv, directory, timeout=timeout, progress=progress)
    else:
        prepared = images.prepare(kernel, progress=lambda m: progress(f"[{kernel.name}] {m}"))
        run = vm.run_in_guest(prepared, pytest_argv, directory, timeout=timeout,
                              cpus=cpus, memory=memory, progress=progress)
        if run.state == "no-boot":
            # Nothing of the tests ran: one more boot tells a flake (seen once under
            # TCG: a timer oops in early boot) from a kernel that never comes up.
            (directory / "console.log").rename(directory / "console.first-boot.log")
            progress(f"[{kernel.name}] did not boot; trying once more")
            run = vm.run_in_guest(prepared, pytest_argv, directory, timeout=timeout,
                                  cpus=cpus, memory=memory, progress=progress)
        kernel = prepared
    return KernelResult(kernel, run, read_junit(run.results / "junit.xml"))


def prebuild_bpf(progress: vm.Progress) -> None:
    """Every BPF variant, built on the host, with the manifest the guests use."""
    from .. import bpf
    from ..bpf import compiler, prebuilt
    started = time.monotonic()
    built = bpf.prebuild()
    prebuilt.write(built, compiler.cache_dir() / prebuilt.MANIFEST_NAME)
    fresh = sum(not b.cache_hit for b in built)
    progress(f"BPF: {len(built)} objects ready ({fresh} compiled) in "
             f"{time.monotonic() - started:.1f} s")


def warm_bytecode(pytest_argv: list[str], progress: vm.Progress) -> int:
    """Compile the lab's modules and pytest's rewritten test modules on the host:
    the guest reads the host's ``__pycache__`` (its root is read-only) and would
    otherwise compile the suite under TCG on every boot."""
    started = time.monotonic()
    last, tests = bytecode.warm(pytest_argv)
    progress(f"bytecode warmed for the guests in {time.monotonic() - started:.1f} s ({last})")
    return tests


# Under TCG each xdist worker starts Python and imports the suite again (~20 s), so
# workers pay only for a long selection: one test file runs faster without (measured:
# 39 tests, first result 31 s and 62 s in all without; 51 s and 71 s with 2 workers).
FIT_JOBS, FIT_MIN_TESTS = "2", 100


def fitted_jobs(jobs: str, tests: int) -> str:
    """``--jobs fit``: FIT_JOBS workers for more than FIT_MIN_TESTS tests, else none."""
    if jobs != "fit":
        return jobs
    return FIT_JOBS if tests > FIT_MIN_TESTS else "0"


def pytest_selection(selection: list[str], jobs: str) -> list[str]:
    """The pytest arguments: the user's selection (default: labtests), plus ``-n jobs``
    unless the selection sets its own."""
    argv = [a for a in selection if a != "--"] or list(DEFAULT_SELECTION)
    has_jobs = any(a in ("-n", "--numprocesses") or a.startswith("--numprocesses=")
                   or (a.startswith("-n") and (a[2:].isdigit() or a[2:] == "auto"))
                   for a in argv)
    return argv if has_jobs or not jobs else argv + ["-n", jobs]


def run_matrix(specs: Iterable[str], selection: list[str], results: Path, *,
               timeout: float = 3600, jobs: str = "fit", cpus: int = 2, memory: str = "2G",
               progress: vm.Progress = print) -> list[KernelResult]:
    parsed = [images.parse(spec) for spec in specs]
    if not parsed:
        raise LabError("no kernel given (--kernel host, --kernel deb:6.12.117, ...)")
    argv = pytest_selection(selection, "")
    tests = FIT_MIN_TESTS + 1                     # on the host alone: workers pay
    if any(not k.is_host for k in parsed):
        prebuild_bpf(progress)
        tests = warm_bytecode(argv, progress)
    argv = pytest_selection(argv, fitted_jobs(jobs, tests))
    out = []
    for kernel in parsed:
        out.append(run_kernel(kernel, argv, results, timeout=timeout, progress=progress,
                              cpus=cpus, memory=memory))
    return out


def save(results: list[KernelResult], directory: Path, table: str) -> None:
    (directory / "table.txt").write_text(table + "\n")
    record = [{"kernel": r.kernel.name, "spec": r.kernel.spec, "release": r.run.release,
               "ok": r.ok, "run": {k: v for k, v in asdict(r.run).items()
                                   if k not in ("console_tail", "results")},
               "results": str(r.run.results),
               "outcomes": {t: asdict(o) for t, o in sorted(r.outcomes.items())}}
              for r in results]
    (directory / "matrix.json").write_text(json.dumps(record, indent=1))


def closing_line(results: list[KernelResult]) -> str:
    """``matrix: N passed, N xfail, N failed, N skipped`` over every kernel; a kernel
    whose run did not complete counts as one failure, a skip under --no-skips as a
    failure; an xfail (a known bug, as expected) is neither passed nor skipped."""
    counts = {"passed": 0, "xfail": 0, "failed": 0, "skipped": 0}
    for result in results:
        counts["failed"] += 0 if result.run.completed else 1
        for outcome in result.outcomes.values():
            if outcome.status in ("failed", "error", "xpass") or (
                    outcome.status == "skipped" and result.no_skips):
                counts["failed"] += 1
            else:
                counts[outcome.status if outcome.status in counts else "skipped"] += 1
    return "matrix: " + ", ".join(f"{n} {word}" for word, n in counts.items())
