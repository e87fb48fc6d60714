#!/usr/bin/env python3
"""One VM step, timed: ``nslab matrix`` (or ``nslab bisect --check``) on another
kernel under the machine's accelerator (TCG here), then the same selection on
the host. Printed: boot, guest collection, first result and the whole step (from
nslab's own progress lines), the host's time for the same tests, and the
guest/host ratio.

    sudo .venv/bin/python benchmarks/vm_step.py [--kernel deb:6.12.117] [--bisect] \\
        [SELECTION ...]        # default: labtests/test_xdp_responder.py (39 tests)

Goal (issue 16): boot -> first result <= 30 s under TCG.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NSLAB = [sys.executable, "-m", "topologies.cli"]
BOOTED = re.compile(r"booted in ([\d.]+) s")
COLLECTED = re.compile(r"(\d+) tests collected after ([\d.]+) s")
FIRST = re.compile(r"first test result at ([\d.]+) s")


def guest_step(args, results: Path) -> tuple[float, str]:
    if args.bisect:
        argv = [*NSLAB, "bisect", "--check", args.kernel, "--results", str(results),
                *args.selection]
    else:
        argv = [*NSLAB, "matrix", "--kernel", args.kernel, "--results", str(results), "--",
                *args.selection]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:])
        raise SystemExit(f"vm_step: the guest step failed (exit {proc.returncode})")
    return wall, proc.stdout


def host_step(selection: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", *selection, "-q", "-n", "0",
                           "-p", "no:cacheprovider"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:])
        raise SystemExit(f"vm_step: the host run failed (exit {proc.returncode})")
    return time.monotonic() - started


def found(pattern: re.Pattern, text: str, group: int = 1) -> str:
    match = pattern.search(text)
    return match[group] if match else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="deb:6.12.117")
    parser.add_argument("--bisect", action="store_true",
                        help="nslab bisect --check (SELECTION is one test id)")
    parser.add_argument("selection", nargs="*", default=["labtests/test_xdp_responder.py"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nslab-vm-step-") as tmp:
        guest_wall, out = guest_step(args, Path(tmp) / "results")
    host_wall = host_step(args.selection)
    tests = found(COLLECTED, out)
    print(f"{'bisect --check' if args.bisect else 'matrix'} on {args.kernel}: "
          f"{' '.join(args.selection)} ({tests} tests)")
    print(f"  boot {found(BOOTED, out)} s, collected after {found(COLLECTED, out, 2)} s, "
          f"first result at {found(FIRST, out)} s, step {guest_wall:.1f} s")
    print(f"  host, same tests (pytest -n 0): {host_wall:.1f} s; "
          f"guest/host {guest_wall / host_wall:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
