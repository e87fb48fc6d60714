"""Interface flags by ioctl, in the calling thread's namespace: the cheapest way
to bring a device up where a netlink socket is not at hand (a node's loopback)."""
from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
_IFREQ = struct.Struct("16sH14x")


def get(ifname: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ.pack(ifname.encode(), 0)))[1]


def set_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS,
                                          _IFREQ.pack(ifname.encode(), 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(ifname.encode(), flags | IFF_UP))
