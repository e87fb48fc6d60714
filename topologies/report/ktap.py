"""KTAP, as the kernel's selftests write it (Documentation/dev-tools/ktap.rst), for
kernel CI systems: one line per test, in the order pytest ran them.

    KTAP version 1
    1..3
    ok 1 labtests/test_lb_snat.py::test_x[fixed]
    not ok 2 labtests/test_lb_snat.py::test_x[prefix]
    ok 3 labtests/test_pod_egress.py::test_y[netkit] # SKIP no netkit link kind
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
"""
from __future__ import annotations

from typing import Mapping

# outcome → (ok?, directive), as kselftest's ksft_test_result_* print them
RESULT = {
    "passed": (True, ""),
    "failed": (False, ""),
    "error": (False, ""),
    "skipped": (True, "SKIP"),
    "xfail": (True, "XFAIL"),
    "xpass": (False, "XPASS"),
}


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def render(outcomes: Mapping[str, object]) -> str:
    """``outcomes``: test id → an object with ``status`` and ``reason`` (matrix.Outcome)."""
    lines = ["KTAP version 1", f"1..{len(outcomes)}"]
    totals = dict.fromkeys(RESULT, 0)
    for n, (test, outcome) in enumerate(outcomes.items(), start=1):
        ok, directive = RESULT.get(outcome.status, (False, ""))
        totals[outcome.status] = totals.get(outcome.status, 0) + 1
        line = f"{'ok' if ok else 'not ok'} {n} {test}"
        if directive:
            line += f" # {directive}" + (f" {_one_line(outcome.reason)}" if outcome.reason else "")
        elif not ok and outcome.reason:
            lines.append(f"# {test}: {_one_line(outcome.reason)}")
        lines.append(line)
    lines.append(f"# Totals: pass:{totals['passed']} fail:{totals['failed']} "
                 f"xfail:{totals['xfail']} xpass:{totals['xpass']} skip:{totals['skipped']} "
                 f"error:{totals['error']}")
    return "\n".join(lines) + "\n"
