"""Neighbour messages (a dump of the ARP / NDP table)."""
from __future__ import annotations

import struct
from typing import NamedTuple, Optional

from .wire import NLMSG, address, body_attrs, mac

RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
NDA_DST, NDA_LLADDR = 1, 2

NDMSG = struct.Struct("=BxxxiHBB")     # family, ifindex, state, flags, type


class Neighbour(NamedTuple):
    index: int
    dst: Optional[str]
    lladdr: Optional[str]
    state: int                          # NUD_* bits


def dump_request(family: int) -> bytes:
    return NDMSG.pack(family, 0, 0, 0, 0)


def parse_neighbour(data: bytes, offset: int) -> Neighbour:
    _family, index, state, _flags, _type = NDMSG.unpack_from(data, offset + NLMSG.size)
    found = body_attrs(data, offset, NDMSG)
    return Neighbour(index, address(found.get(NDA_DST)), mac(found.get(NDA_LLADDR)), state)
