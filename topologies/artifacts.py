"""What a failed lab test leaves behind, for a person to look at.

Per test: a pcapng file per capture point (Wireshark opens them), the verdict
text of every captured packet, and per node ``ip -d link``, addresses, routes,
tc filters, firewall rules and SNMP counters.
"""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from . import firewall

if TYPE_CHECKING:
    from .lab import Lab

NODE_COMMANDS = {
    "links.txt": ["ip", "-d", "link", "show"],
    "addresses.txt": ["ip", "addr", "show"],
    "routes.txt": ["ip", "route", "show", "table", "all"],
    "routes6.txt": ["ip", "-6", "route", "show", "table", "all"],
    "neighbours.txt": ["ip", "neigh", "show"],
}


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:150]


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def collect(lab: "Lab", directory: str) -> list[str]:
    """Write everything the lab can tell about itself; never raises for one piece."""
    os.makedirs(directory, exist_ok=True)
    written, problems = [], []

    def attempt(name: str, fn) -> None:
        try:
            written.append(fn())
        except Exception as exc:
            problems.append(f"{name}: {exc}")

    for i, cap in enumerate(lab.captures):
        stem = os.path.join(directory, safe_name(f"{i}-{cap.node.name}-{cap.device}"))
        attempt(f"pcapng {stem}", lambda: cap.result.write_pcapng(stem + ".pcapng"))
        attempt(f"verdicts {stem}", lambda: _write_verdicts(cap.result, stem + ".verdicts.txt"))
    for node in lab.nodes.values():
        node_dir = os.path.join(directory, node.name)
        os.makedirs(node_dir, exist_ok=True)
        for filename, argv in NODE_COMMANDS.items():
            path = os.path.join(node_dir, filename)
            attempt(path, lambda: (_write(path, node.run(argv, check=False).stdout), path)[1])
        path = os.path.join(node_dir, "tc-filters.txt")
        attempt(path, lambda: (_write(path, _tc_filters(node)), path)[1])
        path = os.path.join(node_dir, "firewall.txt")
        attempt(path, lambda: (_write(path, firewall.dump(node)), path)[1])
        path = os.path.join(node_dir, "snmp.txt")
        attempt(path, lambda: (_write(path, _counters(node)), path)[1])
    if problems:
        path = os.path.join(directory, "collection-problems.txt")
        _write(path, "\n".join(problems) + "\n")
        written.append(path)
    return written


def _write_verdicts(result, path: str) -> str:
    lines = [f"# {result.node}:{result.device}: {len(result.packets)} frames, "
             f"kernel saw {result.kernel_seen}, dropped {result.kernel_drops}"]
    for n, pkt in enumerate(result.packets):
        for verdict in pkt.verdicts():
            lines.append(f"\n## frame {n} ({'out' if pkt.outgoing else 'in'}) "
                         f"{verdict.summary()}")
            lines.append(verdict.show())
    _write(path, "\n".join(lines) + "\n")
    return path


def _tc_filters(node) -> str:
    out = []
    for dev in node.links():
        for parent in ("ingress", "egress"):
            proc = node.run(["tc", "filter", "show", "dev", dev, parent], check=False)
            if proc.stdout.strip():
                out.append(f"# {dev} {parent}\n{proc.stdout}")
    return "\n".join(out) or "(no tc filters)\n"


def _counters(node) -> str:
    tables = node.snmp().tables
    return "\n".join(f"{proto}.{name} {value}" for proto, names in tables.items()
                     for name, value in names.items()) + "\n"
