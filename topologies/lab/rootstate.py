"""A snapshot of the root namespace's network state, to prove labs leave it alone.

Counters are stripped: traffic of the machine's own changes them, and they
are not state a lab could have altered.
"""
from __future__ import annotations

import difflib
import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor

COMMANDS = {
    "links": ["ip", "-d", "link", "show"],
    "addresses": ["ip", "addr", "show"],
    "routes4": ["ip", "route", "show", "table", "all"],
    "routes6": ["ip", "-6", "route", "show", "table", "all"],
    "iptables": ["iptables-save"],
    "ip6tables": ["ip6tables-save"],
    "nft": ["nft", "list", "ruleset"],
}
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+|"
                       r"valid_lft \S+ preferred_lft \S+|expires \d+sec")


def snapshot() -> dict[str, str]:
    out = {}
    for name, argv in COMMANDS.items():
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            text = proc.stdout if proc.returncode == 0 else f"(exit {proc.returncode})"
        except FileNotFoundError:
            text = "(not installed)"
        lines = [_COUNTERS.sub("", line) for line in text.splitlines()
                 if not line.startswith("#")]   # iptables-save's dated comments
        out[name] = "\n".join(lines)
    return out


def snapshot_in_background() -> "Future[dict[str, str]]":
    """``snapshot()`` taken in a thread: seven processes, 30 ms here but 2 s in a
    VM guest under TCG, while the caller goes on (a session collects its tests)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="nslab-rootstate")
    taken = pool.submit(snapshot)
    pool.shutdown(wait=False)
    return taken


def diff(before: dict[str, str], after: dict[str, str]) -> str:
    """A unified diff of what changed, empty when nothing did."""
    parts = []
    for name in before:
        if before[name] != after.get(name):
            parts.extend(difflib.unified_diff(before[name].splitlines(),
                                              after.get(name, "").splitlines(),
                                              f"{name} before", f"{name} after", lineterm=""))
    return "\n".join(parts)
