"""Who owns a lab: a record per lab so that a sweep removes only orphans.

A record is written before the lab's first namespace exists and removed after
its last one is gone. It names the owning process by pid *and* start time (a
pid alone can be reused), so ``nslab sweep`` removes a lab only when that exact
process is dead, and never touches a namespace without a record.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

RECORD_DIR = os.environ.get("NSLAB_RUN_DIR", "/run/nslab")


def process_start_time(pid: int) -> Optional[int]:
    """Start time in clock ticks since boot (field 22 of /proc/pid/stat) of a
    living process; None when it is gone. A zombie (state Z, or X) is dead: it
    keeps its pid and start time only until its parent reaps it, which a killed
    run's parent may never do."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int, start_time: Optional[int] = None) -> bool:
    """The process ``pid`` lives (and, given ``start_time``, is that very process)."""
    started = process_start_time(pid)
    return started is not None and (start_time is None or started == start_time)


def write_record(path: str, data: dict) -> None:
    """A record written whole or not at all (readers never see half of one)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def remove_record(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclass
class OwnerRecord:
    prefix: str
    pid: int
    start_time: int
    argv: list[str] = field(default_factory=list)
    name: str = ""          # a person's name for a long-lived lab (`nslab up`)
    topology: str = ""
    description: dict = field(default_factory=dict)
    session: str = ""       # the test session the lab belongs to ("": a person's)
    kept: bool = False      # left running on purpose (a failed test kept for inspection)
    keeper: bool = False    # the owner is a keeper process (``nslab down`` may stop it)

    @classmethod
    def for_this_process(cls, prefix: str, **kw) -> "OwnerRecord":
        pid = os.getpid()
        return cls(prefix=prefix, pid=pid, start_time=process_start_time(pid) or 0,
                   argv=list(os.sys.argv), **kw)

    @property
    def path(self) -> str:
        return os.path.join(RECORD_DIR, f"{self.prefix}.json")

    def owner_alive(self) -> bool:
        return process_alive(self.pid, self.start_time)

    def save(self) -> None:
        write_record(self.path, asdict(self))

    def delete(self) -> None:
        remove_record(self.path)


def all_records() -> list[OwnerRecord]:
    records = []
    try:
        entries = sorted(os.listdir(RECORD_DIR))
    except FileNotFoundError:
        return records
    for entry in entries:
        if not entry.endswith(".json"):
            continue
        try:
            with open(os.path.join(RECORD_DIR, entry)) as f:
                records.append(OwnerRecord(**json.load(f)))
        except (OSError, ValueError, TypeError):
            continue  # half-written or foreign: not ours to judge
    return records
