"""A bare rtnetlink layer for the hot steps of building a lab, without pyroute2.

pyroute2 costs about 0.3 ms of Python per request (an event loop run, request
objects); the kernel needs 10-20 microseconds for most of them. So the steps
every build makes use, per namespace, a bare rtnetlink socket for requests
(:class:`Rtnl`) and one for link notifications (:class:`LinkEvents`). Both
sockets are made inside the namespace and usable from any thread. The steps a
lab takes for most tests (devices, addresses, MTU, XDP, local routes) go this way
only, so such a test never imports pyroute2, whose package imports every netlink
family it knows (0.1 s here, ~6 s in a VM guest under TCG). Errors are raised as
:class:`NetlinkError`; ``except netlink_errors()`` also catches pyroute2's.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import threading
from typing import Iterator, NamedTuple, Optional

from .ifflags import IFF_LOWER_UP, IFF_UP

SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_CAP_ACK = 270, 1, 2, 10
RTNLGRP_LINK = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETROUTE = 16, 17, 18, 20, 26
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLA_F_NESTED = 0x8000
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_QDISC, IFLA_OPERSTATE = 1, 3, 4, 6, 16
IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_XDP = 18, 28, 43
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_XDP_FD, IFLA_XDP_ATTACHED, IFLA_XDP_FLAGS, IFLA_XDP_PROG_ID = 1, 2, 3, 4
IFLA_XDP_EXPECTED_FD = 8
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST = 1
# IFLA_OPERSTATE's values by the names pyroute2 (and ``ip link``) gives them
OPER_STATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")      # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")       # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, protocol,
#                                         scope, type, flags
_RTA = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")


class NetlinkError(OSError):
    """A request the kernel refused: ``code`` (an errno) and its message in
    ``args[1]``, as pyroute2's NetlinkError carries them."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(code, message or os.strerror(code))
        self.code = code


def netlink_errors() -> tuple[type, ...]:
    """What a netlink request may raise: nslab's NetlinkError, and pyroute2's once
    pyroute2 is imported (only then can it have made a request). For ``except``."""
    pyroute2 = sys.modules.get("pyroute2.netlink.exceptions")
    return (NetlinkError,) if pyroute2 is None else (NetlinkError, pyroute2.NetlinkError)


# -- rtnetlink messages ---------------------------------------------------------
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


def _attr(kind: int, payload: bytes) -> bytes:
    size = _RTA.size + len(payload)
    return _RTA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _string(value: str) -> bytes:
    return value.encode() + b"\0"


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def _messages(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, seq, offset) of each netlink message in a datagram."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        size, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, offset)
        yield kind, seq, offset
        offset += max((size + 3) & ~3, _NLMSG.size)


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


def _attrs(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    """Each attribute's payload between ``pos`` and ``end``, by type (the first of each)."""
    found: dict[int, bytes] = {}
    while pos + _RTA.size <= end:
        length, attr = _RTA.unpack_from(data, pos)
        if length < _RTA.size:
            break
        found.setdefault(attr & ~NLA_F_NESTED, data[pos + _RTA.size:pos + length])
        pos += (length + 3) & ~3
    return found


def _text(value: Optional[bytes]) -> str:
    return value.split(b"\0", 1)[0].decode() if value else ""


def _number(value: Optional[bytes]) -> int:
    return struct.unpack("=I", value[:4])[0] if value else 0


def _parse_details(data: bytes, offset: int) -> LinkDetails:
    size = _NLMSG.unpack_from(data, offset)[0]
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset + _NLMSG.size)
    start = offset + _NLMSG.size + _IFINFO.size
    attrs = _attrs(data, start, offset + size)
    info = attrs.get(IFLA_LINKINFO, b"")
    xdp = attrs.get(IFLA_XDP, b"")
    xdp_attrs = _attrs(xdp, 0, len(xdp))
    mac = attrs.get(IFLA_ADDRESS)
    state = attrs.get(IFLA_OPERSTATE, b"\0")[0]
    return LinkDetails(index, _text(attrs.get(IFLA_IFNAME)), flags,
                       _number(attrs[IFLA_MTU]) if IFLA_MTU in attrs else None,
                       ":".join(f"{b:02x}" for b in mac) if mac is not None else None,
                       OPER_STATES[state] if state < len(OPER_STATES) else str(state),
                       _text(_attrs(info, 0, len(info)).get(IFLA_INFO_KIND)),
                       xdp_attrs.get(IFLA_XDP_ATTACHED, b"\0")[0],
                       _number(xdp_attrs.get(IFLA_XDP_PROG_ID)))


def _parse_link(data: bytes, offset: int) -> LinkMessage:
    size, kind = _NLMSG.unpack_from(data, offset)[:2]
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset + _NLMSG.size)
    ifname, qdisc = "", None
    pos, end = offset + _NLMSG.size + _IFINFO.size, offset + size
    while pos + _RTA.size <= end:
        length, attr = _RTA.unpack_from(data, pos)
        if length < _RTA.size:
            break
        if attr in (IFLA_IFNAME, IFLA_QDISC):
            value = data[pos + _RTA.size:pos + length].split(b"\0", 1)[0].decode()
            if attr == IFLA_IFNAME:
                ifname = value
            else:
                qdisc = value
        pos += (length + 3) & ~3
    return LinkMessage(kind, index, ifname, flags, qdisc)


def veth_request(name: str, peer_name: str, peer_netns_fd: int, *, up: bool,
                 mtu: Optional[int]) -> bytes:
    """RTM_NEWLINK body of a veth pair whose peer goes straight into another
    namespace. Only this end can come up with the creation: the peer is opened
    before the two are tied together, and the kernel refuses that (ENOTCONN)."""
    mtu_attr = _attr(IFLA_MTU, _u32(mtu)) if mtu else b""
    peer = (_IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _string(peer_name))
            + _attr(IFLA_NET_NS_FD, _u32(peer_netns_fd)) + mtu_attr)
    info = _attr(IFLA_INFO_KIND, _string("veth")) + _attr(IFLA_INFO_DATA,
                                                          _attr(VETH_INFO_PEER, peer))
    state = IFF_UP if up else 0
    return (_IFINFO.pack(0, 0, 0, state, IFF_UP) + _attr(IFLA_IFNAME, _string(name))
            + mtu_attr + _attr(IFLA_LINKINFO, info))


def address_request(index: int, family: int, address: bytes, prefixlen: int,
                    flags: int = 0) -> bytes:
    """RTM_NEWADDR body as ``ip addr add`` sends it (IPv4: local = address)."""
    body = _IFADDR.pack(family, prefixlen, flags, 0, index)
    if family == socket.AF_INET:
        body += _attr(IFA_LOCAL, address)
    return body + _attr(IFA_ADDRESS, address)


def _link_by_name(ifname: str, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(0, 0, 0, flags, change) + _attr(IFLA_IFNAME, _string(ifname))


def _s32(value: int) -> bytes:
    return struct.pack("=i", value)


def xdp_request(index: int, fd: int, flags: int, expected_fd: Optional[int] = None) -> bytes:
    """RTM_NEWLINK body putting program ``fd`` (-1: none) on the device's XDP hook;
    with ``expected_fd``, only if that program is the one there (XDP_FLAGS_REPLACE)."""
    xdp = _attr(IFLA_XDP_FD, _s32(fd)) + _attr(IFLA_XDP_FLAGS, _u32(flags))
    if expected_fd is not None:
        xdp += _attr(IFLA_XDP_EXPECTED_FD, _s32(expected_fd))
    return _IFINFO.pack(0, 0, index, 0, 0) + _attr(IFLA_XDP | NLA_F_NESTED, xdp)


def route_request(family: int, address: bytes) -> bytes:
    """RTM_GETROUTE body: the route the kernel would take to ``address``."""
    return _RTMSG.pack(family, len(address) * 8, 0, 0, 0, 0, 0, 0, 0) + _attr(RTA_DST, address)


# -- sockets --------------------------------------------------------------------
def _netlink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


class Rtnl:
    """Requests on a bare rtnetlink socket of one namespace (no groups joined:
    only replies arrive). A lock keeps concurrent callers' replies apart."""

    def __init__(self, sock: socket.socket):
        self._sock, self._seq, self._lock = sock, 0, threading.Lock()
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)   # acks without our request

    @classmethod
    def here(cls) -> "Rtnl":
        """A socket in the calling thread's namespace."""
        return cls(_netlink_socket())

    def close(self) -> None:
        self._sock.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[tuple[bytes, int]]:
        """Send one request and read up to its ack (or error, raised as
        NetlinkError); returns its replies as (datagram, offset)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            header = _NLMSG.pack(_NLMSG.size + len(body), kind,
                                 NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0)
            self._sock.send(header + body)
            replies = []
            while True:
                data = self._sock.recv(65536)
                for msg_type, msg_seq, offset in _messages(data):
                    if msg_seq != seq:
                        continue      # a late reply to an interrupted request
                    if msg_type in (NLMSG_ERROR, NLMSG_DONE):
                        code = -_ERRNO.unpack_from(data, offset + _NLMSG.size)[0]
                        if msg_type == NLMSG_ERROR and code:
                            raise NetlinkError(code, os.strerror(code))
                        return replies
                    replies.append((data, offset))

    def add_link(self, body: bytes) -> None:
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)

    def delete_link(self, ifname: str) -> None:
        self.request(RTM_DELLINK, _link_by_name(ifname))

    def set_up(self, ifname: str) -> None:
        self.request(RTM_NEWLINK, _link_by_name(ifname, IFF_UP, IFF_UP))

    def link(self, ifname: str) -> LinkMessage:
        """The device's current state (raises NetlinkError ENODEV if none)."""
        data, offset = self.request(RTM_GETLINK, _link_by_name(ifname))[0]
        return _parse_link(data, offset)

    def details(self, index: int) -> LinkDetails:
        data, offset = self.request(RTM_GETLINK, _IFINFO.pack(0, 0, index, 0, 0))[0]
        return _parse_details(data, offset)

    def set_link(self, index: int, *, mtu: Optional[int] = None,
                 up: Optional[bool] = None) -> None:
        """``ip link set``: the MTU, up or down, whichever is given."""
        flags, change = (IFF_UP if up else 0, IFF_UP) if up is not None else (0, 0)
        body = _IFINFO.pack(0, 0, index, flags, change)
        self.request(RTM_NEWLINK, body + (_attr(IFLA_MTU, _u32(mtu)) if mtu else b""))

    def set_xdp(self, body: bytes) -> None:
        self.request(RTM_NEWLINK, body)

    def route_type(self, family: int, address: bytes) -> int:
        """The type (RTN_UNICAST, RTN_LOCAL...) of the route to ``address``."""
        data, offset = self.request(RTM_GETROUTE, route_request(family, address))[0]
        return _RTMSG.unpack_from(data, offset + _NLMSG.size)[7]

    def add_address(self, body: bytes) -> None:
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


class LinkEvents:
    """RTNLGRP_LINK notifications of one namespace. Subscribed only while a
    caller waits, so no backlog builds up between waits; ``lock`` keeps
    concurrent waiters from taking each other's notifications."""

    def __init__(self, sock: socket.socket):
        self._sock, self.lock = sock, threading.Lock()
        sock.setblocking(False)

    @classmethod
    def here(cls) -> "LinkEvents":
        return cls(_netlink_socket())

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def subscribe(self) -> None:
        self._drain()         # what is left from an earlier wait is stale
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK)

    def unsubscribe(self) -> None:
        self._sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, RTNLGRP_LINK)

    def read(self) -> list[LinkMessage]:
        """The notifications queued now (raises OSError ENOBUFS when the kernel
        had to drop some: then state must be asked for)."""
        out = []
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return out
            out.extend(_parse_link(data, offset) for kind, _seq, offset in _messages(data)
                       if kind in (RTM_NEWLINK, RTM_DELLINK))

    def _drain(self) -> None:
        while True:
            try:
                self.read()
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
