"""Run a command whose whole process group dies with the process that started it.

A VM guest is a tree (vng → sh → virtme-run → qemu): killing the test that
started it, even with SIGKILL, must take all of it down, not leave qemu running.
The guardian runs in a session of its own (a kill of the test's process group
does not reach it), asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), starts the command in a process group of its own, and
stops that group — SIGTERM, then SIGKILL — on SIGTERM, SIGINT or SIGHUP.

    python -m topologies.kernels.guardian PARENT_PID ARGV...

PARENT_PID is the starter's own pid: a guardian whose starter is already gone by
the time it can ask for PR_SET_PDEATHSIG starts nothing.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: list[str]) -> int:
    parent, argv = int(argv[0]), argv[1:]
    state: dict = {"child": None}

    def on_signal(signum, _frame):
        if state["child"] is not None:
            stop_group(state["child"])
        sys.exit(128 + signum)
    # Handlers first, and the stop signals held while the child is started: one that
    # came in between would otherwise end the guardian and leave the child running.
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"guardian: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 125
    if os.getppid() == parent:       # else the starter died before PR_SET_PDEATHSIG was set
        state["child"] = subprocess.Popen(argv, start_new_session=True, preexec_fn=lambda:
                                          signal.pthread_sigmask(signal.SIG_UNBLOCK,
                                                                 STOP_SIGNALS))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # a held one is handled here
    if state["child"] is None:
        return 128 + signal.SIGTERM
    while state["child"].poll() is None:   # polled: the handler may wait for the child too
        time.sleep(0.2)
    return state["child"].returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
