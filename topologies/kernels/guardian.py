"""Run a command whose whole process group dies with the process that started it.

A VM guest is a tree (vng → sh → virtme-run → qemu): killing the test that
started it, even with SIGKILL, must take all of it down, not leave qemu running.
The guardian runs in a session of its own (a kill of the test's process group
does not reach it), asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), starts the command in a process group of its own, and
stops that group — SIGTERM, then SIGKILL — on SIGTERM, SIGINT or SIGHUP.

    python -m topologies.kernels.guardian ARGV...
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 5


def stop_group(child: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str]) -> int:
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"guardian: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 125
    child = subprocess.Popen(argv, start_new_session=True)

    def on_signal(signum, _frame):
        stop_group(child)
        sys.exit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if os.getppid() != parent:     # the parent died before PR_SET_PDEATHSIG was set
        on_signal(signal.SIGTERM, None)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
