"""Test sessions: every lab a pytest session makes belongs to it, kept labs and
keepers included, so what a killed session left is found and removed.

A session writes ``/run/nslab/sessions/<id>.json`` (its controller's pid and
start time) and exports its id in ``$NSLAB_SESSION``; a lab made by any
process that inherits it (xdist workers, ``nslab up`` from a test, a nested
``nslab run``) records the id. When the session ends cleanly, labs it kept
on purpose pass to the enclosing session (or to the person, at the top);
when it is killed, its record outlives it and ``nslab sweep`` removes every
lab that names it, stopping their keepers.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from typing import Optional

from .owner import (
    RECORD_DIR,
    OwnerRecord,
    all_records,
    process_alive,
    process_start_time,
    remove_record,
    write_record,
)

SESSION_ENV = "NSLAB_SESSION"
SESSION_DIR = os.path.join(RECORD_DIR, "sessions")


@dataclass
class SessionRecord:
    id: str
    pid: int
    start_time: int
    parent: str = ""        # the enclosing session (a test running `nslab run`)

    @property
    def path(self) -> str:
        return os.path.join(SESSION_DIR, f"{self.id}.json")

    def alive(self) -> bool:
        return process_alive(self.pid, self.start_time)

    def save(self) -> None:
        write_record(self.path, asdict(self))

    def delete(self) -> None:
        remove_record(self.path)


def load(session_id: str) -> Optional[SessionRecord]:
    if not session_id or "/" in session_id:
        return None
    try:
        with open(os.path.join(SESSION_DIR, f"{session_id}.json")) as f:
            return SessionRecord(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def alive(session_id: str) -> bool:
    record = load(session_id)
    return record is not None and record.alive()


def current() -> str:
    """The live session this process belongs to, or "" (a stale or made-up id in
    the environment ties nothing: a lab must never be swept for it)."""
    session_id = os.environ.get(SESSION_ENV, "")
    return session_id if alive(session_id) else ""


def begin() -> SessionRecord:
    """Start a session in this process (nested in the current one, if any)."""
    pid = os.getpid()
    record = SessionRecord(id=uuid.uuid4().hex, pid=pid, start_time=process_start_time(pid) or 0,
                           parent=current())
    record.save()
    os.environ[SESSION_ENV] = record.id
    return record


def all_sessions() -> list[SessionRecord]:
    try:
        entries = sorted(os.listdir(SESSION_DIR))
    except FileNotFoundError:
        return []
    return [r for r in (load(e[:-5]) for e in entries if e.endswith(".json")) if r]


def finish(record: SessionRecord) -> tuple[list[OwnerRecord], list[OwnerRecord]]:
    """End ``record``'s session: labs kept on purpose (their keeper alive) pass to
    the enclosing session, or to the person when there is none; the session's
    other labs are returned as left behind, for the caller to report and remove."""
    kept, left = [], []
    for lab in all_records():
        if lab.session != record.id:
            continue
        if lab.kept and lab.owner_alive():
            lab.session = record.parent
            lab.save()
            kept.append(lab)
        else:
            left.append(lab)
    record.delete()
    return kept, left
