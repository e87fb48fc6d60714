"""Route messages: adding and removing a route, and asking the kernel which
route it takes to an address."""
from __future__ import annotations

import struct
from typing import NamedTuple, Optional

from .wire import NLMSG, address, attr, body_attrs, inner, nested, number, u32

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_METRICS = 1, 4, 5, 7, 8
RTAX_MTU = 2
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1

RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, protocol,
#                                        scope, type, flags


def route_change_request(family: int, dst: bytes, prefixlen: int, *,
                         gateway: Optional[bytes] = None, oif: Optional[int] = None,
                         mtu: Optional[int] = None) -> bytes:
    """RTM_NEWROUTE / RTM_DELROUTE body of a unicast route in the main table,
    protocol static, scope universe (what nslab's routes always were)."""
    body = RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC,
                      RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    if prefixlen:
        body += attr(RTA_DST, dst)
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway)
    if oif is not None:
        body += attr(RTA_OIF, u32(oif))
    if mtu:
        body += nested(RTA_METRICS, attr(RTAX_MTU, u32(mtu)))
    return body


def route_request(family: int, address: bytes) -> bytes:
    """RTM_GETROUTE body: the route the kernel would take to ``address``."""
    return RTMSG.pack(family, len(address) * 8, 0, 0, 0, 0, 0, 0, 0) + attr(RTA_DST, address)


class RouteTaken(NamedTuple):
    """The kernel's answer to RTM_GETROUTE."""
    type: int                   # RTN_UNICAST, RTN_LOCAL...
    gateway: Optional[str]
    prefsrc: Optional[str]
    oif: Optional[int]
    mtu: Optional[int]          # the path MTU, when the kernel has learned one


def parse_route(data: bytes, offset: int) -> RouteTaken:
    kind = RTMSG.unpack_from(data, offset + NLMSG.size)[7]
    found = body_attrs(data, offset, RTMSG)
    metrics = inner(found.get(RTA_METRICS, b""))
    return RouteTaken(kind, address(found.get(RTA_GATEWAY)), address(found.get(RTA_PREFSRC)),
                      number(found[RTA_OIF]) if RTA_OIF in found else None,
                      number(metrics[RTAX_MTU]) if RTAX_MTU in metrics else None)
