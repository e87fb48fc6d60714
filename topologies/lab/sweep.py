"""Remove labs whose owner died — and nothing else.

A lab is swept only when its owner record names a process that no longer
exists (pid and start time; a zombie is dead), or when it belongs to a test
session that died (its keeper, still alive, is stopped first: the session that
made it is gone). Only namespaces carrying that record's prefix are removed. A
process still inside such a namespace was started by the dead lab (it lives in
a namespace only the lab created), so it is stopped first: it would otherwise
keep the namespace and its links alive after the unmount. A lab a person
started by hand (no session) is never touched while its keeper lives.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from dataclasses import dataclass, field

from . import netns, pidfd, session
from .owner import RECORD_DIR, OwnerRecord, all_records


@dataclass
class Swept:
    prefix: str
    owner_pid: int
    namespaces: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    why: str = ""

    def describe(self) -> str:
        extra = f", stopped pids {self.processes}" if self.processes else ""
        return f"{self.prefix} ({self.why}): {len(self.namespaces)} namespaces{extra}"


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


def _stop(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL for what is left ``grace`` seconds later."""
    with pidfd.opened(pids) as fds:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pidfd.send(fds, sig)
            if pidfd.wait_exit(fds, grace):
                return


def _stop_owner(record: OwnerRecord) -> None:
    """Stop a live owner (the keeper of a dead session's lab): it removes its lab
    on SIGTERM; one that does not is killed. The pid is checked against the
    record's start time first, so a reused pid is never signalled."""
    if record.pid != os.getpid() and record.owner_alive():
        _stop([record.pid], grace=10.0)


def why_orphan(record: OwnerRecord) -> str:
    """Why ``record``'s lab has no owner any more, or "" while it has one."""
    if not record.owner_alive():
        return f"owner pid {record.pid} is gone"
    if record.session and not session.alive(record.session):
        return f"its test session {record.session[:8]} is gone"
    return ""


def remove_lab(record: OwnerRecord, why: str = "") -> Swept:
    swept = Swept(record.prefix, record.pid, why=why)
    _stop_owner(record)
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


def orphans() -> list[tuple[OwnerRecord, str]]:
    return [(r, why) for r in all_records() if (why := why_orphan(r))]


@contextlib.contextmanager
def exclusive():
    """One sweeper at a time (parallel test sessions and CLI calls)."""
    os.makedirs(RECORD_DIR, exist_ok=True)
    with open(os.path.join(RECORD_DIR, ".sweep.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sweep() -> list[Swept]:
    with exclusive():
        swept = [remove_lab(record, why) for record, why in orphans()]
        for dead in (s for s in session.all_sessions() if not s.alive()):
            dead.delete()
        return swept
