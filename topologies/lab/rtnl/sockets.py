"""The two rtnetlink sockets of a namespace: requests (:class:`Rtnl`) and link
notifications (:class:`LinkEvents`). Both are made inside the namespace and
usable from any thread."""
from __future__ import annotations

import errno
import os
import socket
import threading
from typing import Optional

from ..ifflags import IFF_UP
from . import addr, link, neigh, route, tc
from .wire import (ERRNO, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG,
                   NLMSG_DONE, NLMSG_ERROR, NetlinkError, attr, messages, u32)

SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_CAP_ACK = 270, 1, 2, 10
RTNLGRP_LINK = 1
CREATE = NLM_F_CREATE | NLM_F_EXCL


def netlink_socket() -> socket.socket:
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
        return cls(netlink_socket())

    def close(self) -> None:
        self._sock.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[tuple[bytes, int]]:
        """Send one request and read up to its ack or the end of its dump (an
        error is raised as NetlinkError); returns its replies as (datagram, offset)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            header = NLMSG.pack(NLMSG.size + len(body), kind,
                                NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0)
            self._sock.send(header + body)
            replies = []
            while True:
                data = self._sock.recv(65536)
                for msg_type, msg_seq, offset in messages(data):
                    if msg_seq != seq:
                        continue      # a late reply to an interrupted request
                    if msg_type in (NLMSG_ERROR, NLMSG_DONE):
                        code = -ERRNO.unpack_from(data, offset + NLMSG.size)[0]
                        if msg_type == NLMSG_ERROR and code:
                            raise NetlinkError(code, os.strerror(code))
                        return replies
                    replies.append((data, offset))

    # -- links -------------------------------------------------------------------
    def add_link(self, body: bytes) -> None:
        self.request(link.RTM_NEWLINK, body, CREATE)

    def delete_link(self, ifname: str) -> None:
        self.request(link.RTM_DELLINK, link.by_name(ifname))

    def set_up(self, ifname: str) -> None:
        self.request(link.RTM_NEWLINK, link.by_name(ifname, IFF_UP, IFF_UP))

    def link(self, ifname: str) -> link.LinkMessage:
        """The device's current state (raises NetlinkError ENODEV if none)."""
        return link.parse_link(*self.request(link.RTM_GETLINK, link.by_name(ifname))[0])

    def details(self, index: int) -> link.LinkDetails:
        body = link.IFINFO.pack(0, 0, index, 0, 0)
        return link.parse_details(*self.request(link.RTM_GETLINK, body)[0])

    def set_link(self, index: int, *, mtu: Optional[int] = None,
                 up: Optional[bool] = None) -> None:
        """``ip link set``: the MTU, up or down, whichever is given."""
        flags, change = (IFF_UP if up else 0, IFF_UP) if up is not None else (0, 0)
        body = link.IFINFO.pack(0, 0, index, flags, change)
        self.request(link.RTM_NEWLINK, body + (attr(link.IFLA_MTU, u32(mtu)) if mtu else b""))

    def set_xdp(self, body: bytes) -> None:
        self.request(link.RTM_NEWLINK, body)

    # -- addresses, routes, neighbours -------------------------------------------
    def add_address(self, body: bytes) -> None:
        self.request(addr.RTM_NEWADDR, body, CREATE)

    def add_route(self, body: bytes) -> None:
        self.request(route.RTM_NEWROUTE, body, CREATE)

    def delete_route(self, body: bytes) -> None:
        self.request(route.RTM_DELROUTE, body)

    def route_to(self, family: int, address: bytes) -> route.RouteTaken:
        """The route the kernel takes to ``address`` (``ip route get``)."""
        return route.parse_route(*self.request(route.RTM_GETROUTE,
                                               route.route_request(family, address))[0])

    def route_type(self, family: int, address: bytes) -> int:
        """The type (RTN_UNICAST, RTN_LOCAL...) of the route to ``address``."""
        return self.route_to(family, address).type

    def neighbours(self, family: int) -> list[neigh.Neighbour]:
        return [neigh.parse_neighbour(data, offset) for data, offset in
                self.request(neigh.RTM_GETNEIGH, neigh.dump_request(family), NLM_F_DUMP)]

    # -- tc ----------------------------------------------------------------------
    def add_clsact(self, index: int) -> None:
        self.request(tc.RTM_NEWQDISC, tc.clsact_request(index), CREATE)

    def delete_clsact(self, index: int) -> None:
        self.request(tc.RTM_DELQDISC, tc.clsact_request(index))

    def add_filter(self, body: bytes) -> None:
        self.request(tc.RTM_NEWTFILTER, body, CREATE)

    def delete_filter(self, body: bytes) -> None:
        self.request(tc.RTM_DELTFILTER, body)


class LinkEvents:
    """RTNLGRP_LINK notifications of one namespace. Subscribed only while a
    caller waits, so no backlog builds up between waits; ``lock`` keeps
    concurrent waiters from taking each other's notifications."""

    def __init__(self, sock: socket.socket):
        self._sock, self.lock = sock, threading.Lock()
        sock.setblocking(False)

    @classmethod
    def here(cls) -> "LinkEvents":
        return cls(netlink_socket())

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def subscribe(self) -> None:
        self._drain()         # what is left from an earlier wait is stale
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK)

    def unsubscribe(self) -> None:
        self._sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, RTNLGRP_LINK)

    def read(self) -> list[link.LinkMessage]:
        """The notifications queued now (raises OSError ENOBUFS when the kernel
        had to drop some: then state must be asked for)."""
        out = []
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return out
            out.extend(link.parse_link(data, offset) for kind, _seq, offset in messages(data)
                       if kind in (link.RTM_NEWLINK, link.RTM_DELLINK))

    def _drain(self) -> None:
        while True:
            try:
                self.read()
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
