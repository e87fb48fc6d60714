"""Remove labs whose owner died — and nothing else.

A lab is swept only when its owner record names a process that no longer
exists (pid and start time); only namespaces carrying that record's prefix are
removed. A process still inside such a namespace was started by the dead lab
(it lives in a namespace only the lab created), so it is stopped first: it
would otherwise keep the namespace and its links alive after the unmount.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from dataclasses import dataclass, field

from . import netns
from .owner import RECORD_DIR, OwnerRecord, all_records


@dataclass
class Swept:
    prefix: str
    owner_pid: int
    namespaces: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)


def _pids_in_namespace(ino: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _stop(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
            time.sleep(0.02)


def remove_lab(record: OwnerRecord) -> Swept:
    swept = Swept(record.prefix, record.pid)
    for name in netns.names(record.prefix + "-"):
        try:
            pids = _pids_in_namespace(netns.inode(name))
        except FileNotFoundError:
            continue  # removed meanwhile
        _stop(pids)
        netns.remove(name)
        swept.namespaces.append(name)
        swept.processes.extend(pids)
    record.delete()
    return swept


def orphans() -> list[OwnerRecord]:
    return [r for r in all_records() if not r.owner_alive()]


@contextlib.contextmanager
def exclusive():
    """One sweeper at a time (parallel test sessions and CLI calls)."""
    os.makedirs(RECORD_DIR, exist_ok=True)
    with open(os.path.join(RECORD_DIR, ".sweep.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sweep() -> list[Swept]:
    with exclusive():
        return [remove_lab(record) for record in orphans()]
