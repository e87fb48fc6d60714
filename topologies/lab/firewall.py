"""Firewall rule sets inside a namespace, in the text formats users paste.

``iptables-restore`` text (``*nat`` ... ``COMMIT``) and ``nft -f`` text. Applying
snapshots exactly the tables the rule set touches; removing restores that
snapshot, so removal undoes the rule set and nothing else, whatever chains it
created.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LabError

if TYPE_CHECKING:
    from .node import Node

TOOLS = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}


def tables_of(text: str) -> list[str]:
    """The ``*table`` names an iptables-restore text touches, in order."""
    return list(dict.fromkeys(re.findall(r"^\*(\S+)", text, flags=re.M)))


@dataclass
class AppliedRules:
    node: "Node"
    kind: str            # "iptables", "ip6tables" or "nft"
    text: str
    snapshot: str
    _undo: object = None

    def remove(self) -> None:
        if self._undo is not None:
            self._undo.cancel()
            self._undo = None
        _restore(self.node, self.kind, self.snapshot)


def _restore(node: "Node", kind: str, snapshot: str) -> None:
    if kind == "nft":
        node.run(["nft", "-f", "-"], input="flush ruleset\n" + snapshot)
    else:
        # Without --noflush, restore replaces exactly the tables in the snapshot.
        node.run([TOOLS[4 if kind == "iptables" else 6][1], "-w", "5"], input=snapshot)


def _iptables_snapshot(node: "Node", family: int, tables: list[str]) -> str:
    save = TOOLS[family][0]
    parts = []
    for table in tables:
        out = node.run([save, "-t", table]).stdout
        # An absent table saves as nothing; restoring an empty one removes what we add.
        parts.append(out if f"*{table}" in out else f"*{table}\nCOMMIT\n")
    return "".join(parts)


def apply_iptables(node: "Node", text: str, *, family: int = 4) -> AppliedRules:
    """Apply iptables-restore text on top of what is there (``--noflush``)."""
    tables = tables_of(text)
    if not tables:
        raise LabError("iptables rules: no '*table' line (iptables-save format expected)")
    if not text.endswith("\n"):
        text += "\n"
    snapshot = _iptables_snapshot(node, family, tables)
    kind = "iptables" if family == 4 else "ip6tables"
    node.run([TOOLS[family][1], "-w", "5", "--noflush"], input=text)
    applied = AppliedRules(node, kind, text, snapshot)
    applied._undo = node.lab.defer_within(_restore, node, kind, snapshot,
                                   what=f"{kind} rules in {node.name}")
    return applied


def apply_nft(node: "Node", text: str) -> AppliedRules:
    """Apply an ``nft -f`` rule set."""
    snapshot = node.run(["nft", "list", "ruleset"]).stdout
    node.run(["nft", "-f", "-"], input=text)
    applied = AppliedRules(node, "nft", text, snapshot)
    applied._undo = node.lab.defer_within(_restore, node, "nft", snapshot,
                                   what=f"nft rules in {node.name}")
    return applied


# Tables iptables-nft keeps in nftables: shown by iptables-save, not twice.
XT_TABLES = {f"{family} {name}" for family in ("ip", "ip6")
             for name in ("filter", "nat", "mangle", "raw", "security")}
_COUNTERS = re.compile(r"\s*\[\d+:\d+\]")


def rules(node: "Node") -> str:
    """The namespace's rules, normalised for comparison: no counters or dates,
    and an iptables table with no rule and only built-in accepting chains
    counts as absent (restoring a snapshot may leave it existing but empty)."""
    parts = []
    for family in (4, 6):
        for block in node.run([TOOLS[family][0]]).stdout.split("*")[1:]:
            lines = [_COUNTERS.sub("", l) for l in block.splitlines()
                     if l and not l.startswith("#")]
            meaningful = [l for l in lines[1:] if l != "COMMIT"
                          and not (l.startswith(":") and l.endswith(" ACCEPT"))]
            if meaningful:
                parts.append(f"ipv{family} *" + "\n".join(lines))
    for table in node.run(["nft", "list", "tables"]).stdout.splitlines():
        name = table.removeprefix("table ").strip()
        if name and name not in XT_TABLES:
            parts.append(node.run(["nft", "list", "table", *name.split()]).stdout)
    return "\n".join(parts)


def dump(node: "Node") -> str:
    """Every rule of the namespace, for failure artifacts."""
    out = []
    for argv in (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]):
        proc = node.run(argv, check=False)
        out.append(f"# {' '.join(argv)}\n{proc.stdout or proc.stderr}")
    return "\n".join(out)
