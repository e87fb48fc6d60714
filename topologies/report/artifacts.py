"""What a failed lab test leaves behind, for a person to look at.

Per test: a pcapng file per capture point (Wireshark opens them), the verdict
text of every captured packet, and per node ``ip -d link``, addresses, routes,
tc filters, firewall rules and SNMP counters.
"""
from __future__ import annotations

import functools
import os
import re
from typing import TYPE_CHECKING

from ..lab import firewall

if TYPE_CHECKING:
    from ..lab.lab import Lab

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

    def attempt(path: str, write) -> None:
        """``write(path)`` one piece; a failure is noted, the rest still written."""
        try:
            write(path)
            written.append(path)
        except Exception as exc:
            problems.append(f"{path}: {exc}")

    for i, cap in enumerate(lab.captures):
        stem = os.path.join(directory, safe_name(f"{i}-{cap.node.name}-{cap.device}"))
        attempt(stem + ".pcapng", cap.result.write_pcapng)
        attempt(stem + ".verdicts.txt", functools.partial(_write_verdicts, cap.result))
    for node in lab.nodes.values():
        node_dir = os.path.join(directory, node.name)
        os.makedirs(node_dir, exist_ok=True)
        texts = {name: functools.partial(_command_output, node, argv)
                 for name, argv in NODE_COMMANDS.items()}
        texts.update({"tc-filters.txt": functools.partial(_tc_filters, node),
                      "firewall.txt": functools.partial(firewall.dump, node),
                      "snmp.txt": functools.partial(_counters, node)})
        for name, text in texts.items():
            attempt(os.path.join(node_dir, name), lambda path, text=text: _write(path, text()))
    if problems:
        path = os.path.join(directory, "collection-problems.txt")
        _write(path, "\n".join(problems) + "\n")
        written.append(path)
    return written


def _command_output(node, argv) -> str:
    return node.run(argv, check=False).stdout


def _write_verdicts(result, path: str) -> None:
    lines = [f"# {result.node}:{result.device}: {len(result.packets)} frames, "
             f"kernel saw {result.kernel_seen}, dropped {result.kernel_drops}"]
    for n, pkt in enumerate(result.packets):
        for verdict in pkt.verdicts():
            lines.append(f"\n## frame {n} ({'out' if pkt.outgoing else 'in'}) "
                         f"{verdict.summary()}")
            lines.append(verdict.show())
    _write(path, "\n".join(lines) + "\n")


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
