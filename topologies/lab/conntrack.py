"""Conntrack entries of a node, read through netlink inside its namespace."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .node import Node


@dataclass(frozen=True)
class Flow:
    proto: int
    orig: tuple      # (saddr, sport, daddr, dport) as the packet left its sender
    reply: tuple     # (saddr, sport, daddr, dport) expected back; differs under NAT

    @property
    def snat_sport(self) -> Optional[int]:
        """The source port NAT gave the flow (reply's destination port)."""
        return self.reply[3]


def flows(node: "Node", proto: Optional[int] = None) -> list[Flow]:
    def dump() -> list[Flow]:
        from pyroute2 import Conntrack   # on first use: see rtnl on pyroute2's import
        ct = Conntrack()
        try:
            out = []
            for entry in ct.dump_entries():
                o, r = entry.tuple_orig, entry.tuple_reply
                if proto is not None and o.proto != proto:
                    continue
                out.append(Flow(o.proto, (o.saddr, o.sport, o.daddr, o.dport),
                                (r.saddr, r.sport, r.daddr, r.dport)))
            return out
        finally:
            ct.close()
    return node.call(dump)
