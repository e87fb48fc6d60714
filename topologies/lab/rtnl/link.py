"""Link messages: what a build reads of a device, and the requests that make
veth and vxlan devices or put an XDP program on one."""
from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple, Optional

from ..ifflags import IFF_LOWER_UP, IFF_UP
from .wire import (NLMSG, attr, be16, body_attrs, inner, mac, nested, number, s32, string, text,
                   u8, u32)

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_QDISC, IFLA_OPERSTATE = 1, 3, 4, 6, 16
IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_XDP = 18, 28, 43
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_XDP_FD, IFLA_XDP_ATTACHED, IFLA_XDP_FLAGS, IFLA_XDP_PROG_ID = 1, 2, 3, 4
IFLA_XDP_EXPECTED_FD = 8
IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 2, 3, 4
IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT, IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6 = 7, 15, 16, 17
IFLA_VXLAN_UDP_CSUM, IFLA_VXLAN_UDP_ZERO_CSUM6_TX, IFLA_VXLAN_UDP_ZERO_CSUM6_RX = 18, 19, 20
# IFLA_OPERSTATE's values by the names pyroute2 (and ``ip link``) gives them
OPER_STATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

IFINFO = struct.Struct("=BxHiII")      # family, type, index, flags, change


class LinkMessage(NamedTuple):
    """The parts of an RTM_NEWLINK/RTM_DELLINK message a lab build looks at."""
    type: int
    index: int
    ifname: str
    flags: int
    qdisc: Optional[str]

    @property
    def operational(self) -> bool:
        """Up with carrier. A notification saying so comes only after the
        kernel has activated the device's qdisc (at open, or in the link
        watcher); a reply to a request may come before (no lock held)."""
        return self.type == RTM_NEWLINK and self.flags & (IFF_UP | IFF_LOWER_UP) == \
            IFF_UP | IFF_LOWER_UP


class LinkDetails(NamedTuple):
    """What ``Iface.info`` and ``xdp_state`` read of a device (RTM_GETLINK)."""
    index: int
    ifname: str
    flags: int
    mtu: Optional[int]
    mac: Optional[str]
    state: str
    kind: str
    xdp_attached: int       # IFLA_XDP_ATTACHED: 0 none, 1 native, 2 generic, 3 offload, 4 multi
    xdp_prog_id: int


def parse_details(data: bytes, offset: int) -> LinkDetails:
    _family, _type, index, flags, _change = IFINFO.unpack_from(data, offset + NLMSG.size)
    found = body_attrs(data, offset, IFINFO)
    info = found.get(IFLA_LINKINFO, b"")
    xdp = found.get(IFLA_XDP, b"")
    xdp_attrs = inner(xdp)
    state = found.get(IFLA_OPERSTATE, b"\0")[0]
    return LinkDetails(index, text(found.get(IFLA_IFNAME)), flags,
                       number(found[IFLA_MTU]) if IFLA_MTU in found else None,
                       mac(found.get(IFLA_ADDRESS)),
                       OPER_STATES[state] if state < len(OPER_STATES) else str(state),
                       text(inner(info).get(IFLA_INFO_KIND)),
                       xdp_attrs.get(IFLA_XDP_ATTACHED, b"\0")[0],
                       number(xdp_attrs.get(IFLA_XDP_PROG_ID)))


def parse_link(data: bytes, offset: int) -> LinkMessage:
    kind = NLMSG.unpack_from(data, offset)[1]
    _family, _type, index, flags, _change = IFINFO.unpack_from(data, offset + NLMSG.size)
    found = body_attrs(data, offset, IFINFO)
    qdisc = found.get(IFLA_QDISC)
    return LinkMessage(kind, index, text(found.get(IFLA_IFNAME)), flags,
                       text(qdisc) if qdisc is not None else None)


def by_name(ifname: str, flags: int = 0, change: int = 0) -> bytes:
    return IFINFO.pack(0, 0, 0, flags, change) + attr(IFLA_IFNAME, string(ifname))


def veth_request(name: str, peer_name: str, peer_netns_fd: int, *, up: bool,
                 mtu: Optional[int]) -> bytes:
    """RTM_NEWLINK body of a veth pair whose peer goes straight into another
    namespace. Only this end can come up with the creation: the peer is opened
    before the two are tied together, and the kernel refuses that (ENOTCONN)."""
    mtu_attr = attr(IFLA_MTU, u32(mtu)) if mtu else b""
    peer = (IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, string(peer_name))
            + attr(IFLA_NET_NS_FD, u32(peer_netns_fd)) + mtu_attr)
    info = attr(IFLA_INFO_KIND, string("veth")) + attr(IFLA_INFO_DATA,
                                                       attr(VETH_INFO_PEER, peer))
    state = IFF_UP if up else 0
    return (IFINFO.pack(0, 0, 0, state, IFF_UP) + attr(IFLA_IFNAME, string(name))
            + mtu_attr + attr(IFLA_LINKINFO, info))


def vxlan_request(name: str, *, vni: int, port: int, link: int, local: str, remote: str,
                  udpcsum: bool, learning: bool, mtu: Optional[int]) -> bytes:
    """RTM_NEWLINK body of a unicast VXLAN device over device ``link``. The outer
    UDP checksum is always explicit: the kernel's default has changed over the
    years (IPv4: UDP_CSUM; IPv6: the zero-checksum pair)."""
    local_ip, remote_ip = ipaddress.ip_address(local), ipaddress.ip_address(remote)
    data = [attr(IFLA_VXLAN_ID, u32(vni)), attr(IFLA_VXLAN_PORT, be16(port)),
            attr(IFLA_VXLAN_LINK, u32(link)), attr(IFLA_VXLAN_LEARNING, u8(int(learning)))]
    if local_ip.version == 6:
        data += [attr(IFLA_VXLAN_LOCAL6, local_ip.packed),
                 attr(IFLA_VXLAN_GROUP6, remote_ip.packed),
                 attr(IFLA_VXLAN_UDP_ZERO_CSUM6_TX, u8(int(not udpcsum))),
                 attr(IFLA_VXLAN_UDP_ZERO_CSUM6_RX, u8(int(not udpcsum)))]
    else:
        data += [attr(IFLA_VXLAN_LOCAL, local_ip.packed), attr(IFLA_VXLAN_GROUP, remote_ip.packed),
                 attr(IFLA_VXLAN_UDP_CSUM, u8(int(udpcsum)))]
    info = attr(IFLA_INFO_KIND, string("vxlan")) + attr(IFLA_INFO_DATA, b"".join(data))
    return (IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, string(name))
            + (attr(IFLA_MTU, u32(mtu)) if mtu else b"") + attr(IFLA_LINKINFO, info))


def xdp_request(index: int, fd: int, flags: int, expected_fd: Optional[int] = None) -> bytes:
    """RTM_NEWLINK body putting program ``fd`` (-1: none) on the device's XDP hook;
    with ``expected_fd``, only if that program is the one there (XDP_FLAGS_REPLACE)."""
    xdp = [attr(IFLA_XDP_FD, s32(fd)), attr(IFLA_XDP_FLAGS, u32(flags))]
    if expected_fd is not None:
        xdp.append(attr(IFLA_XDP_EXPECTED_FD, s32(expected_fd)))
    return IFINFO.pack(0, 0, index, 0, 0) + nested(IFLA_XDP, *xdp)
