"""Waiting on descriptors, never on a polling interval: a descriptor ``select``
waits on beside a socket, so that a thread serving or capturing sleeps until
traffic or its stop; and a poll bounded by a deadline, for waits that end on a
kernel event (a link announced, a process gone).
"""
from __future__ import annotations

import os
import select
import time
from typing import Iterable, Optional


def poller(fds: Iterable[int]) -> select.poll:
    """A poll object watching ``fds`` for input (not select(): a busy process may
    hold descriptors above 1024)."""
    poll = select.poll()
    for fd in fds:
        poll.register(fd, select.POLLIN)
    return poll


def readable(poller: select.poll, deadline: float) -> Optional[list[int]]:
    """The descriptors ``poller`` finds readable before ``deadline`` (a
    ``time.monotonic()`` value), or None once the deadline has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    return [fd for fd, _event in poller.poll(remaining * 1000)]


class Wakeup:
    """``set()`` makes ``fileno()`` readable, for good."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        os.write(self._write, b"!")

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)
