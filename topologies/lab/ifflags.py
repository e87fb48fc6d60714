"""Interface flags by ioctl, for the calling thread's namespace.

Cheaper than a netlink round trip through pyroute2 (tens of microseconds);
used on a node's thread for the hot steps of building a lab.
"""
from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40
_IFREQ = struct.Struct("16sH14x")


def get(ifname: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ.pack(ifname.encode(), 0)))[1]


def set_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS,
                                          _IFREQ.pack(ifname.encode(), 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(ifname.encode(), flags | IFF_UP))


def running(ifname: str) -> bool:
    """IFF_RUNNING: the link watcher has set the operational state UP."""
    return bool(get(ifname) & IFF_RUNNING)
