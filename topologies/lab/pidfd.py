"""Processes by pidfd: signalled and awaited on the kernel's word.

A pidfd names one process, not a pid that may be reused once it is gone: a
signal sent through it never reaches a stranger, and it becomes readable the
moment the process exits (a zombie has exited) — no polling interval.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Iterable, Iterator

from . import wakeup


@contextlib.contextmanager
def opened(pids: Iterable[int]) -> Iterator[list[int]]:
    """pidfds of those of ``pids`` that exist now; closed on leaving."""
    fds = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                fds.append(os.pidfd_open(pid))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def send(fds: Iterable[int], sig: int) -> None:
    """Signal each process (one already gone is skipped)."""
    for fd in fds:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, sig)


def wait_exit(fds: Iterable[int], timeout: float) -> bool:
    """Whether every process exited within ``timeout`` seconds (the bound of a
    wait gone wrong: the wait ends when the last one exits)."""
    left = set(fds)
    poller = wakeup.poller(left)
    deadline = time.monotonic() + timeout
    while left:
        ready = wakeup.readable(poller, deadline)
        if ready is None:
            return False
        for fd in ready:
            left.discard(fd)
            poller.unregister(fd)
    return True
