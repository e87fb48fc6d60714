"""A keeper: the process that owns a lab after the one that made it is gone.

It takes over the lab's owner record (its pid and start time become the
record's, so ``nslab sweep`` removes the lab if the keeper is ever killed),
reports ``{"ready": prefix}`` (or ``{"error": ...}``) as one JSON line on
stdout, then waits: SIGTERM (``nslab down``) or SIGINT removes the lab.

    python -m topologies.lab.keeper --adopt PREFIX --name NAME   # what Lab.hand_over() starts
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys

from .owner import all_records, process_start_time
from .sweep import remove_lab


def wait_for_signal() -> None:
    """Until SIGTERM or SIGINT; SIGHUP is ignored (the keeper outlives its terminal).
    The signal wakes the wait (a wakeup fd, written whichever thread it reaches)."""
    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        while not stop["now"]:
            select.select([read_end], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(read_end, 512)
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)


def detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def report(**status) -> None:
    print(json.dumps(status), flush=True)


def adopt(prefix: str, name: str) -> int:
    """Take over a lab whose owner is about to exit (a failed test kept for
    inspection): become its owner under ``name``, then remove it on ``nslab down``."""
    record = next((r for r in all_records() if r.prefix == prefix), None)
    if record is None:
        report(error=f"no lab {prefix}")
        return 2
    record.pid, record.start_time = os.getpid(), process_start_time(os.getpid())
    record.name, record.keeper = name, True
    record.save()
    report(ready=prefix)
    detach_stdio()
    wait_for_signal()
    remove_lab(record)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nslab-keeper")
    parser.add_argument("--adopt", metavar="PREFIX", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    return adopt(args.adopt, args.name)


if __name__ == "__main__":
    sys.exit(main())
