"""``nslab bisect``: which Debian kernel changed one test's outcome.

    nslab bisect --good deb:6.1.0-47 --bad deb:6.1.0-56 labtests/test_x.py::test_y

bisects over the Debian kernel versions apt offers between the two (the list may
cross series: 6.1.0-56 → 6.12.107), booting each in a VM, and prints every step
and the first bad version. Each step is classified like ``git bisect run``:

- 0 good: the test's outcome is in ``--good-if`` (default passed, xfail);
- 1 bad: in ``--bad-if`` (default failed, error, xpass), or the guest died or
  hung *while the test ran* (a panic is the kernel's fault);
- 125 cannot test: any other outcome (skipped, not collected) or a guest that
  never got to the test.

``--good-if``/``--bad-if`` name other outcomes for other questions, e.g. "which
kernel first runs this netkit test": ``--good-if skipped --bad-if passed``.

``nslab bisect --check SPEC TEST`` runs one step on one kernel (any spec, e.g. a
freshly built bzImage) and exits with that code: ``ci/git-bisect-run.sh`` uses it.
The whole bisect exits 0 when it found the first bad version, 1 when an endpoint
did not hold (the good one is not good, or the bad one not bad), and 125 when
untestable versions hide the boundary.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import LabError
from . import images, matrix, vm

GOOD, BAD, SKIP = 0, 1, 125
VERDICT = {GOOD: "good", BAD: "bad", SKIP: "cannot test"}
DEFAULT_GOOD_IF = ("passed", "xfail")
DEFAULT_BAD_IF = ("failed", "error", "xpass")


@dataclass(frozen=True)
class Step:
    version: str
    code: int
    why: str
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return VERDICT[self.code]


@dataclass
class Bisection:
    versions: list[str]
    steps: list[Step] = field(default_factory=list)
    first_bad: Optional[str] = None
    last_good: Optional[str] = None
    suspects: list[str] = field(default_factory=list)   # when skips hide the boundary
    exit_code: int = SKIP
    message: str = ""


def classify(run: vm.Run, outcome: Optional[matrix.Outcome],
             good_if: Sequence[str] = DEFAULT_GOOD_IF,
             bad_if: Sequence[str] = DEFAULT_BAD_IF) -> tuple[int, str]:
    """One kernel's run of one test → (GOOD|BAD|SKIP, why)."""
    if not run.completed:
        started = (run.results / "started").exists()
        if started and run.state in ("crashed", "timeout"):
            return BAD, f"guest {run.state} while the test ran: {run.detail}"
        return SKIP, f"guest {run.state}: {run.detail}"
    if outcome is None:
        return SKIP, f"the test did not run (pytest exit {run.exit_code})"
    why = outcome.status + (f": {outcome.reason[:160]}" if outcome.reason else "")
    if outcome.status in bad_if:
        return BAD, why
    if outcome.status in good_if:
        return GOOD, why
    return SKIP, why


def find_outcome(outcomes: dict[str, matrix.Outcome], test: str) -> Optional[matrix.Outcome]:
    """The outcome of ``test`` (as the user wrote it) among a run's results."""
    if test in outcomes:
        return outcomes[test]
    tail = [o for t, o in outcomes.items() if t.endswith(test) or test.endswith(t)]
    if len(tail) == 1:
        return tail[0]
    return next(iter(outcomes.values())) if len(outcomes) == 1 else None


def bisect(versions: Sequence[str], check: Callable[[str], Step],
           log: Callable[[str], None] = print) -> Bisection:
    """Binary search for the first bad version; ``versions[0]`` is claimed good and
    ``versions[-1]`` bad (both are checked first). Untestable versions are
    stepped around, as ``git bisect skip`` does."""
    result = Bisection(list(versions))
    if len(versions) < 2:
        raise LabError("bisect needs a good and a bad version")

    def step(index: int, left: str) -> Step:
        done = check(versions[index])
        result.steps.append(done)
        log(f"step {len(result.steps)}: {done.version}: {done.verdict} ({done.why}) "
            f"[{done.seconds:.0f} s]{left}")
        return done

    first = step(0, "")
    if first.code != GOOD:
        result.exit_code = BAD if first.code == BAD else SKIP
        result.message = f"the good version {first.version} is not good: {first.why}"
        return result
    last = step(len(versions) - 1, "")
    if last.code != BAD:
        result.exit_code = BAD if last.code == GOOD else SKIP
        result.message = f"the bad version {last.version} is not bad: {last.why}"
        return result
    lo, hi, skipped = 0, len(versions) - 1, set()
    while True:
        candidates = [i for i in range(lo + 1, hi) if i not in skipped]
        if not candidates:
            break
        index = candidates[len(candidates) // 2]
        done = step(index, f" — {len(candidates) - 1} versions left to test")
        if done.code == GOOD:
            lo = index
        elif done.code == BAD:
            hi = index
        else:
            skipped.add(index)
    result.last_good, hidden = versions[lo], [versions[i] for i in range(lo + 1, hi)]
    if hidden:
        result.suspects = hidden + [versions[hi]]
        result.exit_code = SKIP
        result.message = (f"only untestable versions are left: the first bad version is one "
                          f"of {', '.join(result.suspects)}")
    else:
        result.first_bad, result.exit_code = versions[hi], GOOD
        result.message = f"first bad version: {versions[hi]} (last good: {versions[lo]})"
    return result


# -- running steps in VMs -------------------------------------------------------------------
def checker(test: str, results: Path, *, timeout: float, good_if: Sequence[str],
            bad_if: Sequence[str], progress: vm.Progress) -> Callable[[str], Step]:
    """A ``check(spec_or_version)`` that boots the kernel and runs ``test`` in it."""
    def check(version: str) -> Step:
        spec = version if ":" in version or "/" in version or version == "host" \
            else f"deb:{version}"
        started = time.monotonic()
        kernel = images.parse(spec)
        result = matrix.run_kernel(kernel, [test, "-n", "0"], results, timeout=timeout,
                                   progress=progress)
        code, why = classify(result.run, find_outcome(result.outcomes, test), good_if, bad_if)
        return Step(version, code, why, time.monotonic() - started)
    return check
